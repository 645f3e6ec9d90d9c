"""Training data for the supernet: a folder of images in class sub-folders, or the built-in digits demo.

Both give float tensors N x C x S x S scaled to [-1, 1] (S: the largest resolution of the space; the
trainer resizes per candidate) and int64 labels, split into training and validation sets by a seeded,
per-class split. Images are loaded into memory once.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import TinyNasError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".webp", ".tif", ".tiff")


@dataclass
class Dataset:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: list[str]

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]


def load(spec: str, size: int, channels: int | None, val_fraction: float, seed: int) -> Dataset:
    """`spec` is 'digits' or a folder DIR/<class>/<image>; `channels` 1 or 3 (None: digits 1, folders 3)."""
    if channels not in (None, 1, 3):
        raise TinyNasError(f"--channels must be 1 or 3, got {channels}")
    if not 0.0 < val_fraction < 1.0:
        raise TinyNasError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if spec == "digits":
        x, y, classes = _digits(size, channels or 1)
    else:
        x, y, classes = _folder(Path(spec), size, channels or 3)
    train, val = _split(y, val_fraction, seed)
    if len(val) == 0 or len(train) == 0:
        raise TinyNasError(f"data {spec}: {len(y)} images are too few for a training and a validation split "
                           f"(--val-fraction {val_fraction})")
    return Dataset(x[train], y[train], x[val], y[val], classes)


def _digits(size: int, channels: int):
    """scikit-learn's 8x8 digits (1797 images, values 0..16), upscaled bilinearly to size x size."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return _normalise(x.repeat(1, channels, 1, 1)), torch.tensor(d.target, dtype=torch.int64), \
        [str(c) for c in d.target_names]


def _folder(root: Path, size: int, channels: int):
    from PIL import Image, UnidentifiedImageError
    if not root.is_dir():
        raise TinyNasError(f"data folder {root} does not exist (expected {root}/<class>/<image>, or 'digits')")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise TinyNasError(f"data folder {root} has no class sub-folders (expected {root}/<class>/<image>.png)")
    if len(classes) < 2:
        raise TinyNasError(f"data folder {root} has one class sub-folder ({classes[0]}); classification needs at least 2")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TinyNasError(f"class folder {root / name} has no images ({' '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise TinyNasError(f"cannot read image {f}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            images.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
            labels.append(label)
    return _normalise(torch.from_numpy(np.stack(images))), torch.tensor(labels, dtype=torch.int64), classes


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.5


def _split(y: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a seeded per-class split: round(n * val_fraction) images of each class for validation."""
    rng = random.Random(seed)
    labels = y.tolist()
    train, val = [], []
    for c in sorted(set(labels)):
        idx = [i for i, v in enumerate(labels) if v == c]
        rng.shuffle(idx)
        n_val = round(len(idx) * val_fraction)
        val += idx[:n_val]
        train += idx[n_val:]
    return torch.tensor(sorted(train), dtype=torch.int64), torch.tensor(sorted(val), dtype=torch.int64)
