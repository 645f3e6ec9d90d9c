"""Training data for the supernet: a folder of images in class sub-folders, or the built-in digits demo.

Both give float tensors N x C x S x S scaled to [-1, 1] (S: the largest resolution of the space; the
trainer resizes per candidate) and int64 labels, split by a seeded, per-class split into

- training: the supernet and the winner's fine-tuning learn on it;
- validation: the search measures candidates on it (and chooses by it);
- test (`test_fraction` > 0): held out from all of these; the deployed network's accuracy on the board is
  measured on it. `test_fold` picks which slice of each class's shuffled images is the test split, so that
  folds 0 .. round(1 / test_fraction) - 1 are a k-fold partition of the data (bench/nas.py's folds).

With `test_fraction` 0 the split is the two-way one (training, validation) of earlier checkpoints.
Images are loaded into memory once.
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
    test_x: torch.Tensor | None = None      # None: no test split (test_fraction 0)
    test_y: torch.Tensor | None = None

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]


def load(spec: str, size: int, channels: int | None, val_fraction: float, seed: int, test_fraction: float = 0.0,
         test_fold: int = 0) -> Dataset:
    """`spec` is 'digits' or a folder DIR/<class>/<image>; `channels` 1 or 3 (None: digits 1, folders 3);
    the fractions are of each class's images (module docstring)."""
    if channels not in (None, 1, 3):
        raise TinyNasError(f"--channels must be 1 or 3, got {channels}")
    if not 0.0 < val_fraction < 1.0:
        raise TinyNasError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise TinyNasError(f"--test-fraction must be at least 0 and leave images for training: --val-fraction "
                           f"{val_fraction} + --test-fraction {test_fraction} must be below 1")
    if test_fold < 0 or (test_fraction > 0 and test_fold >= round(1 / test_fraction)):
        raise TinyNasError(f"--test-fold must be between 0 and {max(round(1 / test_fraction), 1) - 1 if test_fraction else 0} "
                           f"(--test-fraction {test_fraction}), got {test_fold}")
    if spec == "digits":
        x, y, classes = _digits(size, channels or 1)
    else:
        x, y, classes = _folder(Path(spec), size, channels or 3)
    train, val, test = _split(y, val_fraction, seed, test_fraction, test_fold)
    if len(val) == 0 or len(train) == 0 or (test_fraction > 0 and len(test) == 0):
        raise TinyNasError(f"data {spec}: {len(y)} images are too few for a training, a validation"
                           f"{' and a test' if test_fraction > 0 else ''} split (--val-fraction {val_fraction}"
                           f"{f', --test-fraction {test_fraction}' if test_fraction > 0 else ''})")
    if test_fraction == 0:
        return Dataset(x[train], y[train], x[val], y[val], classes)
    return Dataset(x[train], y[train], x[val], y[val], classes, x[test], y[test])


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


def _split(y: torch.Tensor, val_fraction: float, seed: int, test_fraction: float = 0.0,
           test_fold: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of a seeded per-class split: of each class's n shuffled images, the slice
    [round(n * f * k), round(n * f * (k + 1))) is for test (f = test_fraction, k = test_fold), then
    round(n * val_fraction) of the others for validation, the rest for training."""
    rng = random.Random(seed)
    labels = y.tolist()
    train, val, test = [], [], []
    for c in sorted(set(labels)):
        idx = [i for i, v in enumerate(labels) if v == c]
        rng.shuffle(idx)
        a, b = round(len(idx) * test_fraction * test_fold), round(len(idx) * test_fraction * (test_fold + 1))
        test += idx[a:b]
        rest = idx[:a] + idx[b:]
        n_val = round(len(idx) * val_fraction)
        val += rest[:n_val]
        train += rest[n_val:]
    return tuple(torch.tensor(sorted(s), dtype=torch.int64) for s in (train, val, test))
