"""Training data for tinytrain: a folder of images in class sub-folders, an .npz, or the
digits demo, as the model's int8 input.

Sources (`--train` / `--test`):
  DIR/             one sub-folder per class (sorted by name: label 0, 1, ...), images inside
                   (.png .jpg .jpeg .bmp .gif .ppm .pgm .tif .tiff .webp); the number of class
                   folders must be --classes
  FILE.npz         arrays x and y: x [N, H, W, C] or [N, H, W] (one channel), uint8 pixels
                   (0..255) or floats in [0, 1]; y [N] integer labels in [0, --classes)
  digits           (bench and `make train-demo`) scikit-learn's 8x8 digits, 10 classes,
                   half the samples of each class to train, half held out, seeded

Every image is resized bilinearly to the model input's height and width (align corners off,
as PIL and torch do) and converted to its channels (grey repeated to RGB, RGB averaged to
grey), as float32 in [0, 1].  quantize() maps [0, 1] linearly onto the input tensor's int8
range (0 -> -128, 1 -> 127: a uint8 pixel minus 128, the convention of int8 image models).
Errors are DataError, one line naming the file or folder and what is expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                  ".webp")


class DataError(ValueError):
    """Data that cannot be used (the message names the file or folder)."""


@dataclass
class Data:
    x: np.ndarray                # float32 [N, H, W, C] in [0, 1]
    y: np.ndarray                # int64 [N]
    source: str

    def __len__(self) -> int:
        return len(self.y)


def input_shape(fwd) -> tuple:
    """(H, W, C) of a forward graph's image input (NHWC, batch 1)."""
    t = fwd.tensors[fwd.inputs[0]]
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise DataError(f"{fwd.name}: input '{t.name}' has shape {t.shape}; tinytrain trains "
                        f"image models with one NHWC input of batch 1")
    return tuple(int(d) for d in t.shape[1:])


def quantize(x: np.ndarray) -> np.ndarray:
    """Images in [0, 1] as the int8 input: round(255 x) - 128."""
    return (np.rint(np.clip(x, 0.0, 1.0) * 255.0) - 128).astype(np.int8)


def resize(images: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of [N, H0, W0, C] float images (pixel centres aligned, edges clamped)."""
    n, h0, w0, c = images.shape
    if (h0, w0) == (h, w):
        return images.astype(np.float32)

    def axis(n_out, n_in):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h, h0)
    x0, x1, fx = axis(w, w0)
    a = images.astype(np.float32)
    rows = a[:, y0] * (1 - fy)[None, :, None, None] + a[:, y1] * fy[None, :, None, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]


def _to_channels(images: np.ndarray, c: int, source: str) -> np.ndarray:
    have = images.shape[-1]
    if have == c:
        return images
    if have == 1:
        return np.repeat(images, c, axis=-1)
    if c == 1 and have in (3, 4):
        return images[..., :3].mean(axis=-1, keepdims=True)
    if c == 3 and have == 4:
        return images[..., :3]
    raise DataError(f"{source}: images have {have} channels; the model takes {c}")


def _fit(images: np.ndarray, shape: tuple, source: str) -> np.ndarray:
    h, w, c = shape
    return np.clip(resize(_to_channels(images, c, source), h, w), 0.0, 1.0)


def _check_labels(y: np.ndarray, classes: int, source: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: y must be a 1-D array of integer labels, got "
                        f"{y.dtype}{list(y.shape)}")
    bad = y[(y < 0) | (y >= classes)]
    if bad.size:
        raise DataError(f"{source}: label {int(bad[0])} is outside [0, {classes}) "
                        f"(--classes {classes})")
    return y.astype(np.int64)


def load_npz(path: Path, shape: tuple, classes: int) -> Data:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise DataError(f"{path}: no array '{missing[0]}' (an .npz needs x [N, H, W, C] "
                                f"and y [N]; it has {', '.join(f.files) or 'none'})")
            x, y = f["x"], f["y"]
    except (OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz ({str(e).splitlines()[0]})") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) == 0:
        raise DataError(f"{path}: x must be [N, H, W, C] or [N, H, W] with N > 0, got "
                        f"{list(x.shape)}")
    if len(y) != len(x):
        raise DataError(f"{path}: x has {len(x)} images but y {len(y)} labels")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{path}: float x must lie in [0, 1], got [{x.min():g}, {x.max():g}] "
                            f"(or give uint8 pixels)")
    else:
        raise DataError(f"{path}: x is {x.dtype}; expected uint8 pixels or floats in [0, 1]")
    return Data(_fit(x, shape, str(path)), _check_labels(np.asarray(y), classes, str(path)),
                str(path))


def load_folder(root: Path, shape: tuple, classes: int) -> Data:
    from PIL import Image, UnidentifiedImageError

    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"{root}: no class sub-folders (expected {root}/<class>/<image>.png)")
    if len(names) != classes:
        raise DataError(f"{root}: {len(names)} class folders ({', '.join(names[:12])}"
                        f"{', ...' if len(names) > 12 else ''}) but --classes {classes}")
    images, labels = [], []
    for label, name in enumerate(names):
        files = sorted(p for p in (root / name).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{root / name}: no images ({' '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with Image.open(f) as im:
                    a = np.asarray(im.convert("RGB" if shape[2] != 1 else "L"), np.float32)
            except (UnidentifiedImageError, OSError, ValueError) as e:
                why = (str(e).splitlines() or [type(e).__name__])[0].replace(f" '{f}'", "")
                raise DataError(f"{f}: not a readable image ({why})") from None
            a = a.reshape(a.shape[0], a.shape[1], -1) / 255.0
            images.append(_fit(a[None], shape, str(f))[0])
            labels.append(label)
    return Data(np.stack(images), np.asarray(labels, np.int64), str(root))


def load(source, shape: tuple, classes: int) -> Data:
    """The images and labels of a folder or .npz (module docstring), at shape (H, W, C)."""
    p = Path(source)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder (give DIR/<class>/<image> or FILE.npz)")
    if p.is_dir():
        return load_folder(p, shape, classes)
    if p.suffix.lower() != ".npz":
        raise DataError(f"{p}: not a folder or an .npz file")
    return load_npz(p, shape, classes)


def digits(shape: tuple, seed: int = 0, limit: int | None = None) -> tuple:
    """(train, test): scikit-learn's digits (1797 8x8 images, 10 classes, values 0..16) scaled
    to shape, half of each class to train and half held out, chosen by a seeded shuffle;
    limit: at most this many samples in each split (a fast check), the first of a seeded
    shuffle."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = _fit(d.images[..., None].astype(np.float32) / 16.0, shape, "digits")
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        train.append(idx[: len(idx) // 2])
        test.append(idx[len(idx) // 2:])
    splits = []
    for idx in (np.concatenate(train), np.concatenate(test)):
        idx = rng.permutation(idx)[:limit]
        splits.append(Data(x[idx], y[idx], "digits"))
    return tuple(splits)
