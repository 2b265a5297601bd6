"""In-memory data: tensors moved to the device once, batched by slicing, never collated.

Small data sets (digits, mnist1d, the user's npz arrays) fit in memory many times over.
A ``DataLoader`` with per-sample collation spends more time assembling a batch than the
model spends on it; slicing a device tensor with a shuffled index costs microseconds.
"""

from __future__ import annotations

import inspect
import logging
import math
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from spaces.plugins import DATASET_GROUP, resolve
from spaces.spec import SpecError
from trainers.errors import DataError
from trainers.vision import AUGMENT, VISION_DATASETS, augment_batch, load_vision_arrays

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorData:
    """A classification set split once into train and validation with a fixed seed."""

    name: str
    x_train: torch.Tensor  # (N_train, *input_shape), float32
    y_train: torch.Tensor  # (N_train,), int64
    x_val: torch.Tensor  # (N_val, *input_shape)
    y_val: torch.Tensor  # (N_val,)
    n_classes: int
    augment: tuple[int, bool] | None = None  # (crop padding, flip) applied to training batches

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> TensorData:
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_val=self.x_val.to(device),
            y_val=self.y_val.to(device),
        )


def split_arrays(
    name: str, x: np.ndarray, y: np.ndarray, *, val_fraction: float = 0.2, seed: int = 0
) -> TensorData:
    """Seeded stratification-free split, then standardisation with train statistics only."""
    if x.ndim < 2 or len(x) != len(y):
        raise DataError(f"{name}: need x of shape (N, ...) and y of shape (N,), got {x.shape} and {y.shape}")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"validation fraction must be in (0, 1), but got {val_fraction}")
    classes, y_idx = np.unique(np.asarray(y), return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{name}: need at least 2 classes, found {len(classes)}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(y_idx.astype(np.int64))
    # Per-channel statistics (dim 1 for (N, C, ...) maps, per feature for (N, F)).
    dims = [0, *range(2, xt.ndim)]
    mean = xt[train].mean(dim=dims, keepdim=True)
    std = xt[train].std(dim=dims, keepdim=True).clamp_min(1e-6)
    xt = (xt - mean) / std
    return TensorData(name, xt[train], yt[train], xt[val], yt[val], n_classes=len(classes))


def load_digits_data(*, val_fraction: float = 0.2, seed: int = 0) -> TensorData:
    """scikit-learn's 8x8 digits (1,797 samples), shipped inside scikit-learn: no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images[:, None, :, :]  # (1797, 1, 8, 8): usable as 64 features or a 1x8x8 image
    return split_arrays("digits", images, bunch.target, val_fraction=val_fraction, seed=seed)


def load_npz_data(path: str, *, val_fraction: float = 0.2, seed: int = 0) -> TensorData:
    """A user's arrays: an ``.npz`` file holding ``x`` (N, ...) and ``y`` (N,)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"npz file not found: {path}")
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable npz file ({type(err).__name__})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path}: not a readable npz file (a single array?); save with np.savez(path, x=..., y=...)"
        )
    with loaded as arrays:
        missing = {"x", "y"} - set(arrays.files)
        if missing:
            raise DataError(f"{path}: missing array(s) {', '.join(sorted(missing))}; need 'x' and 'y'")
        try:
            x, y = arrays["x"], arrays["y"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise DataError(
                f"{path}: not a readable npz file (corrupted data: {type(err).__name__})"
            ) from None
    return split_arrays(file.stem, x, y, val_fraction=val_fraction, seed=seed)


def load_mnist1d_data(n_samples: int = 5000, *, val_fraction: float = 0.2, seed: int = 0) -> TensorData:
    """MNIST-1D (Greydanus 2020): 40-point 1-D signals, 10 classes, generated offline.

    Harder than digits, so arrangements matter. Generating 20,000 samples takes seconds, so
    the arrays are cached under ``~/.cache/varshift``.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError("dataset mnist1d needs the extra: pip install 'varshift[mnist1d]'") from None
    if n_samples < 100:
        raise DataError(f"mnist1d needs at least 100 samples, but got {n_samples}")
    cache = Path.home() / ".cache" / "varshift" / f"mnist1d-{n_samples}.npz"
    if cache.is_file():
        with np.load(cache) as arrays:
            x, y = arrays["x"], arrays["y"]
    else:
        args = get_dataset_args()
        args.num_samples = n_samples
        raw = make_dataset(args)
        x = np.concatenate([raw["x"], raw["x_test"]])[:, None, :]  # (N, 1, 40): a 1-channel signal
        y = np.concatenate([raw["y"], raw["y_test"]])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, x=x, y=y)
    return split_arrays("mnist1d", x, y, val_fraction=val_fraction, seed=seed)


def load_csv_data(path: str, *, val_fraction: float = 0.2, seed: int = 0) -> TensorData:
    """A CSV file with a header: numeric feature columns and a ``label`` column (else the last)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"csv file not found: {path}")
    try:
        table = np.genfromtxt(file, delimiter=",", names=True, dtype=float, encoding="utf-8")
    except ValueError as err:
        raise DataError(f"{path}: not a numeric CSV with a header row ({err})") from None
    names = list(table.dtype.names or ())
    if len(names) < 2 or table.size < 2:
        raise DataError(f"{path}: need a header, feature columns and a label column")
    label = next((n for n in names if n.lower() in ("label", "target", "y", "class")), names[-1])
    features = np.stack([table[n] for n in names if n != label], axis=1)
    if np.isnan(features).any() or np.isnan(table[label]).any():
        raise DataError(f"{path}: empty or non-numeric cells (only numbers are supported)")
    return split_arrays(file.stem, features, table[label], val_fraction=val_fraction, seed=seed)


def as_tensor_data(name: str, result: Any, *, val_fraction: float = 0.2, seed: int = 0) -> TensorData:
    """What a data set function returned -> :class:`TensorData`: TensorData as is, an
    ``(x, y)`` pair of arrays or tensors (split and standardised here), or a
    LightningDataModule (its train and validation batches, materialised in memory once)."""
    if isinstance(result, TensorData):
        return result
    if isinstance(result, pl.LightningDataModule):
        return _materialise(name, result)
    if isinstance(result, (tuple, list)) and len(result) == 2:
        x, y = (np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v) for v in result)
        return split_arrays(name, x, y, val_fraction=val_fraction, seed=seed)
    raise DataError(
        f"dataset {name!r} returned {type(result).__name__}; need (x, y), TensorData or a LightningDataModule"
    )


def _materialise(name: str, dm: pl.LightningDataModule) -> TensorData:
    dm.prepare_data()
    dm.setup("fit")

    def stack(loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*((b[0], b[1]) for b in loader), strict=True)
        return torch.cat(xs).float(), torch.cat(ys).long()

    x_train, y_train = stack(dm.train_dataloader())
    x_val, y_val = stack(dm.val_dataloader())
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    return TensorData(name, x_train, y_train, x_val, y_val, n_classes=n_classes)


def load_dataset(
    name: str,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    data_dir: str = "data",
    download: bool = False,
    augment: bool = True,
) -> TensorData:
    """Resolve ``--dataset``: ``digits``, ``mnist1d`` (``mnist1d:N``), ``npz:PATH``, ``csv:PATH``,
    ``mnist``/``fashion-mnist``/``cifar10``/``cifar100`` (torchvision, from ``data_dir``), an
    installed ``varshift.datasets`` entry point, or ``module:function``."""
    if name == "digits":
        return load_digits_data(val_fraction=val_fraction, seed=seed)
    if name == "mnist1d" or name.startswith("mnist1d:"):
        size = name.partition(":")[2] or "5000"
        if not size.isdigit():
            raise DataError(f"mnist1d size must be a whole number, but got {size!r}")
        return load_mnist1d_data(int(size), val_fraction=val_fraction, seed=seed)
    if name.startswith("npz:"):
        return load_npz_data(name[4:], val_fraction=val_fraction, seed=seed)
    if name.startswith("csv:"):
        return load_csv_data(name[4:], val_fraction=val_fraction, seed=seed)
    if name in VISION_DATASETS:
        x, y = load_vision_arrays(name, data_dir, download)
        data = split_arrays(name, x, y, val_fraction=val_fraction, seed=seed)
        return replace(data, augment=AUGMENT[name] if augment else None)
    try:
        _, function = resolve(name, DATASET_GROUP, "dataset")
    except SpecError as err:
        raise DataError(
            str(err).replace("module:function", "npz:PATH, csv:PATH or module:function")
        ) from None
    accepted = inspect.signature(function).parameters
    kwargs = {k: v for k, v in (("val_fraction", val_fraction), ("seed", seed)) if k in accepted}
    return as_tensor_data(name, function(**kwargs), val_fraction=val_fraction, seed=seed)


class TensorBatches:
    """An iterable of ``(x, y)`` batches sliced from device tensors.

    Shuffled with its own generator, so each epoch's order depends only on the seed.
    ``rank``/``world_size`` give each DDP process its own disjoint share of every epoch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: tuple[int, bool] | None = None,
    ) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.augment = augment
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        # Every rank gets the same number of batches, or DDP's collectives would hang.
        self.per_rank = len(x) // world_size
        self.n_batches = max(1, math.ceil(self.per_rank / batch_size))

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        index = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        index = index[self.rank * self.per_rank : (self.rank + 1) * self.per_rank].to(self.x.device)
        for start in range(0, len(index), self.batch_size):
            idx = index[start : start + self.batch_size]
            x = self.x[idx]
            if self.augment is not None:
                x = augment_batch(x, *self.augment, generator=self.generator)
            yield x, self.y[idx]


class InMemoryDataModule(pl.LightningDataModule):
    """Serves a :class:`TensorData` from the training device, moved there once."""

    def __init__(
        self, data: TensorData, batch_size: int = 64, seed: int = 0, steps_per_call: int = 1
    ) -> None:
        super().__init__()
        self.data, self.batch_size, self.seed = data, batch_size, seed
        # Training batches hold ``steps_per_call`` consecutive minibatches; the module splits
        # them, so Lightning's per-batch bookkeeping is paid once per call, not per step.
        self.steps_per_call = steps_per_call
        self._on_device: TensorData | None = None

    def _device_data(self) -> TensorData:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        if self._on_device is None or self._on_device.x_train.device != device:
            self._on_device = self.data.to(device)
        return self._on_device

    def _rank(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_dataloader(self) -> TensorBatches:
        d, (rank, world) = self._device_data(), self._rank()
        return TensorBatches(
            d.x_train,
            d.y_train,
            self.batch_size * self.steps_per_call,
            shuffle=True,
            seed=self.seed,
            rank=rank,
            world_size=world,
            augment=d.augment,
        )

    def val_dataloader(self) -> TensorBatches:
        d, (rank, world) = self._device_data(), self._rank()
        return TensorBatches(d.x_val, d.y_val, 512, rank=rank, world_size=world)
