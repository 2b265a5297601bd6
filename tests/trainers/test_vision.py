"""torchvision data sets from fake files in the real on-disk formats (MNIST idx files, CIFAR
python pickles), through the same code path as real ones, with download=False: nothing here
touches the network. Needs the `vision` extra; CI runs this file in a venv that has it
(VARSHIFT_REQUIRE_VISION=1 turns a missing torchvision into a failure, not a skip)."""

from __future__ import annotations

import importlib.util
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.data import DataError, InMemoryDataModule, load_dataset
from trainers.vision import augment_batch

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
needs_torchvision = pytest.mark.skipif(
    not HAS_TORCHVISION and not os.environ.get("VARSHIFT_REQUIRE_VISION"),
    reason="torchvision (the vision extra) is not installed; CI runs these in its own venv",
)


def _idx(path: Path, array: np.ndarray) -> None:
    """The IDX format MNIST ships in: magic (0x08 = uint8, ndim), big-endian dims, bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, folder: str, n: int = 120) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n), ("t10k", n // 4)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)


def fake_cifar(root: Path, folder: str, files: list[str], label_key: str, classes: int, n: int = 40) -> None:
    base = root / folder
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in files:
        batch = {
            "data": rng.integers(0, 256, (n, 3 * 32 * 32)).astype(np.uint8),
            label_key: list(np.arange(n) % classes),
        }
        with open(base / name, "wb") as f:
            pickle.dump(batch, f)
    meta = "batches.meta" if classes == 10 else "meta"
    key = "label_names" if classes == 10 else "fine_label_names"
    with open(base / meta, "wb") as f:
        pickle.dump({key: [f"c{i}" for i in range(classes)]}, f)


CIFAR10_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


@needs_torchvision
@pytest.mark.parametrize(
    ("name", "make", "shape", "classes"),
    [
        ("mnist", lambda r: fake_mnist(r, "MNIST"), (1, 28, 28), 10),
        ("fashion-mnist", lambda r: fake_mnist(r, "FashionMNIST"), (1, 28, 28), 10),
        (
            "cifar10",
            lambda r: fake_cifar(r, "cifar-10-batches-py", CIFAR10_FILES, "labels", 10),
            (3, 32, 32),
            10,
        ),
        (
            "cifar100",
            lambda r: fake_cifar(r, "cifar-100-python", ["train", "test"], "fine_labels", 100),
            (3, 32, 32),
            40,
        ),
    ],
)
def test_fake_files_load_through_torchvision(tmp_path: Path, name: str, make, shape, classes) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path)
    data = load_dataset(name, data_dir=str(tmp_path), download=False)
    assert data.input_shape == shape and data.n_classes == classes
    # Standardised per channel with the training split's statistics.
    dims = [0, 2, 3]
    assert torch.allclose(data.x_train.mean(dim=dims), torch.zeros(shape[0]), atol=1e-4)
    assert data.augment is not None
    assert load_dataset(name, data_dir=str(tmp_path), augment=False).augment is None


@needs_torchvision
def test_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found in .*--download"):
        load_dataset("cifar10", data_dir=str(tmp_path), download=False)


@pytest.mark.skipif(HAS_TORCHVISION, reason="checks the message shown without torchvision")
def test_without_torchvision_one_line_names_the_extra() -> None:
    with pytest.raises(DataError, match=r"pip install 'varshift\[vision\]'"):
        load_dataset("cifar10")


def test_augment_batch() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 8)
    assert torch.equal(augment_batch(x, 0, False, g), x)
    flipped = augment_batch(x, 0, True, g)
    for a, b in zip(flipped, x, strict=True):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))
    cropped = augment_batch(x, 2, False, torch.Generator().manual_seed(1))
    assert cropped.shape == x.shape and not torch.equal(cropped, x)
    again = augment_batch(x, 2, False, torch.Generator().manual_seed(1))
    assert torch.equal(cropped, again)  # the seed decides


def test_training_batches_are_augmented_validation_batches_not() -> None:
    from trainers.data import TensorData

    x = torch.randn(64, 1, 8, 8)
    y = torch.arange(64) % 4
    data = TensorData("img", x, y, x.clone(), y.clone(), n_classes=4, augment=(2, True))
    dm = InMemoryDataModule(data, batch_size=64)
    ((xb, _),) = list(dm.train_dataloader())
    ((xv, _),) = list(dm.val_dataloader())
    assert not torch.equal(xb.sort(0).values, x.sort(0).values)
    assert torch.equal(xv, x)
