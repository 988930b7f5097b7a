"""Data sets for the torch bridge: :class:`YinYang` (generated) and :class:`MNIST` (from disk).

Both are map-style :class:`torch.utils.data.Dataset` objects returning ``(x, label)`` with
a float32 feature tensor and an int64 label; encode them into spikes with
:mod:`.transforms`. Nothing is downloaded; MNIST is read from a directory.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import BrainScaleS2Error
from .imdd import IMDD

__all__ = ["YinYang", "MNIST", "IMDD", "DatasetNotFoundError", "default_data_root", "YINYANG_SPLITS"]

#: published splits of the Yin-Yang data set: name -> (size, seed)
YINYANG_SPLITS = {"train": (5000, 42), "validation": (1000, 41), "test": (1000, 40)}


class DatasetNotFoundError(BrainScaleS2Error, FileNotFoundError):
    """The files of a data set are not where they were looked for."""


class YinYang(Dataset):
    """The Yin-Yang classification data set (Kriener, Goeltz & Petrovici 2022).

    Points in the unit square inside a circle of radius ``r_big = 0.5`` around
    ``(0.5, 0.5)``, labelled yin (0), yang (1) or dot (2), drawn with the published
    generator: per sample a class is drawn first (``rng.randint(3)``), then points
    ``rng.rand(2) * 2 r_big`` until one inside the circle has that class. Features are
    ``[x, y, 1 - x, 1 - y]``.

    Parameters
    ----------
    split : {"train", "validation", "test"}
        Published split: 5000 samples with seed 42, 1000 with seed 41, 1000 with seed 40.
    size, seed : int, optional
        Override the split's size and seed.
    r_small, r_big : float
        Radii of the dots and of the whole disc.
    transform : callable, optional
        Applied to each feature tensor.

    Examples
    --------
    >>> data = YinYang("test")
    >>> len(data), data.class_counts().tolist()
    (1000, [350, 316, 334])
    """

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        seed: int | None = None,
        r_small: float = 0.1,
        r_big: float = 0.5,
        transform=None,
    ):
        if split not in YINYANG_SPLITS:
            raise ValueError(
                f"YinYang split {split!r} is unknown; choose one of {', '.join(YINYANG_SPLITS)}."
            )
        n_default, seed_default = YINYANG_SPLITS[split]
        self.size = n_default if size is None else int(size)
        self.seed = seed_default if seed is None else int(seed)
        self.r_small, self.r_big = float(r_small), float(r_big)
        self.transform = transform
        rng = np.random.RandomState(self.seed)
        features, labels = np.empty((self.size, 4)), np.empty(self.size, dtype=np.int64)
        for k in range(self.size):
            goal = rng.randint(3)
            while True:
                x, y = rng.rand(2) * 2.0 * self.r_big
                if np.sqrt((x - self.r_big) ** 2 + (y - self.r_big) ** 2) > self.r_big:
                    continue
                if self.which_class(x, y) == goal:
                    break
            features[k] = (x, y, 1.0 - x, 1.0 - y)
            labels[k] = goal
        self.features = torch.from_numpy(features).float()
        self.labels = torch.from_numpy(labels)

    def which_class(self, x: float, y: float) -> int:
        """Class of the point ``(x, y)``: 0 yin, 1 yang, 2 dot."""
        d_right = np.hypot(x - 1.5 * self.r_big, y - self.r_big)
        d_left = np.hypot(x - 0.5 * self.r_big, y - self.r_big)
        if d_right < self.r_small or d_left < self.r_small:
            return 2
        c1 = d_right <= self.r_small
        c2 = self.r_small < d_left <= 0.5 * self.r_big
        c3 = y > self.r_big and d_right > 0.5 * self.r_big
        return int(c1 or c2 or c3)

    def class_counts(self) -> torch.Tensor:
        """Number of samples per class."""
        return torch.bincount(self.labels, minlength=3)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):
        x = self.features[index]
        return (self.transform(x) if self.transform else x), self.labels[index]


def default_data_root() -> Path:
    """Where data sets are looked for: ``$PYNN_BRAINSCALES2_DATA``, else ``../shared/data``
    relative to the repository root."""
    env = os.environ.get("PYNN_BRAINSCALES2_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise DatasetNotFoundError(f"{path} is not an IDX file of unsigned bytes (magic {magic:#x}).")
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


class MNIST(Dataset):
    """MNIST digits read from the original IDX files (gzip-compressed or not).

    Parameters
    ----------
    root : str or Path, optional
        Directory holding ``train-images-idx3-ubyte.gz`` etc., or a directory with an
        ``mnist/`` sub-directory holding them. Default: :func:`default_data_root`.
    train : bool
        Training (60,000) or test (10,000) images.
    transform : callable, optional
        Applied to each image, a float32 tensor ``[28, 28]`` in 0..1.
    """

    FILES = {
        True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }

    def __init__(self, root=None, train: bool = True, transform=None):
        base = Path(root) if root is not None else default_data_root()
        images, labels = (self._find(base, name) for name in self.FILES[bool(train)])
        self.images = torch.from_numpy(_read_idx(images).copy())
        self.labels = torch.from_numpy(_read_idx(labels).astype(np.int64))
        self.train = bool(train)
        self.transform = transform

    @staticmethod
    def _find(base: Path, name: str) -> Path:
        for folder in (base, base / "mnist"):
            for suffix in (".gz", ""):
                path = folder / (name + suffix)
                if path.is_file():
                    return path
        raise DatasetNotFoundError(
            f"MNIST file {name}(.gz) not found in {base} or {base / 'mnist'}. Pass root=<directory> "
            "or set PYNN_BRAINSCALES2_DATA to a directory with an mnist/ folder (no download is attempted)."
        )

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index):
        x = self.images[index].float() / 255.0
        return (self.transform(x) if self.transform else x), self.labels[index]
