"""28x28 image data sets in the IDX format (MNIST, Fashion-MNIST): find and read them.

Where the files come from, in this order:

1. ``data_dir`` (``--data-dir``), if given: a folder holding the four IDX files
   (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
   ``t10k-labels-idx1-ubyte``, each plain or ``.gz``), or torchvision's
   ``<root>/FashionMNIST/raw`` / ``<root>/MNIST/raw`` below it. Nothing else is tried:
   a folder named explicitly and not holding the data is an error.
2. Fashion-MNIST only: the Debian package ``dataset-fashion-mnist`` (its folder is
   taken from ``dpkg -L``, falling back to /usr/share/datasets/fashion-mnist).
3. torchvision's download into ``~/.cache/adaptive_conv_ext/<dataset>``, if torchvision
   is importable and the network answers (this also finds an earlier download).

Otherwise a FileNotFoundError says how to get the data.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

DATASETS = {
    # name: (Debian package or None, its usual folder, torchvision class and raw folder name)
    "fashion-mnist": ("dataset-fashion-mnist", Path("/usr/share/datasets/fashion-mnist"), "FashionMNIST"),
    "mnist": (None, None, "MNIST"),
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CACHE = Path.home() / ".cache" / "adaptive_conv_ext"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzip-compressed if its name ends in .gz) as a numpy array."""
    path = Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: {len(raw)} bytes, but the header {shape} asks for {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_folder(folder: Path, torchvision_name: str) -> Optional[Path]:
    """`folder`, or torchvision's raw folder under it, if it holds all four files."""
    for candidate in (folder, folder / torchvision_name / "raw"):
        if all(_find(candidate, stem) for pair in SPLIT_FILES.values() for stem in pair):
            return candidate
    return None


def _debian_folder(package: str, usual: Path) -> List[Path]:
    folders = []
    try:
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, timeout=30)
        folders = sorted({Path(line).parent for line in listed.stdout.splitlines() if "idx3-ubyte" in line})
    except (OSError, subprocess.SubprocessError):  # no dpkg: not a Debian system
        pass
    return folders + [usual]


def _torchvision_download(dataset: str, torchvision_name: str) -> Tuple[Optional[Path], str]:
    try:
        import torchvision.datasets as tvd
    except ImportError:
        return None, "torchvision is not installed"
    root = CACHE / dataset
    try:
        for train in (True, False):
            getattr(tvd, torchvision_name)(str(root), train=train, download=True)
    except Exception as e:  # no network, a proxy, a mirror down: all mean "not here"
        return None, f"torchvision's download failed ({type(e).__name__}: {e})"
    return _idx_folder(root, torchvision_name), ""


def locate(dataset: str = "fashion-mnist", data_dir: Optional[Path] = None, download: bool = True) -> Path:
    """The folder holding the four IDX files of `dataset` (see the module docstring)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    package, usual, tv_name = DATASETS[dataset]
    if data_dir is not None:
        found = _idx_folder(Path(data_dir), tv_name)
        if found is None:
            raise FileNotFoundError(
                f"--data-dir {data_dir}: no {dataset} IDX files there (expected "
                f"{', '.join(s for pair in SPLIT_FILES.values() for s in pair)}, plain or .gz)"
            )
        return found
    searched: List[Path] = []
    if package is not None:
        for folder in _debian_folder(package, usual):
            searched.append(folder)
            if _idx_folder(folder, tv_name):
                return folder
    searched.append(CACHE / dataset)
    if _idx_folder(CACHE / dataset, tv_name):
        return _idx_folder(CACHE / dataset, tv_name)
    why = "download not attempted"
    if download:
        found, why = _torchvision_download(dataset, tv_name)
        if found is not None:
            return found
    how = [f"pass --data-dir FOLDER holding the four IDX files (plain or .gz)"]
    if package is not None:
        how.insert(0, f"install the Debian package: apt-get install {package}")
    how.append("or pip install torchvision on a machine with a network (the data are then downloaded)")
    raise FileNotFoundError(
        f"{dataset} not found (looked in {', '.join(map(str, dict.fromkeys(searched)))}; {why}). "
        f"To get it: {'; '.join(how)}."
    )


def load(
    dataset: str = "fashion-mnist",
    data_dir: Optional[Path] = None,
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    subset_seed: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): images (N, 1, 28, 28) float32 in [0, 1],
    labels int64. n_train / n_test take class-balanced random subsets (fixed by
    `subset_seed`), for quick runs and tests."""
    folder = locate(dataset, data_dir)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        images_file, labels_file = (_find(folder, stem) for stem in SPLIT_FILES[split])
        x = torch.from_numpy(read_idx(images_file).astype(np.float32) / 255.0).unsqueeze(1)
        y = torch.from_numpy(read_idx(labels_file).astype(np.int64))
        if x.shape[0] != y.shape[0] or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"{folder}: {split} images {tuple(x.shape)} do not match labels {tuple(y.shape)}")
        if n is not None and n < len(y):
            idx = balanced_subset(y, n, subset_seed)
            x, y = x[idx], y[idx]
        out += [x, y]
    return tuple(out)


def balanced_subset(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of n samples, as equal a number per class as n allows, in random order."""
    g = torch.Generator().manual_seed(seed)
    classes = y.unique()
    per_class = [torch.nonzero(y == c).flatten() for c in classes]
    per_class = [p[torch.randperm(len(p), generator=g)] for p in per_class]
    take = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    idx = torch.cat([p[:k] for p, k in zip(per_class, take)])
    return idx[torch.randperm(len(idx), generator=g)]
