"""In-memory data: the seeded split, train-only standardisation, sliced batches, npz and digits."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.data import (
    InMemoryDataModule,
    TensorBatches,
    TensorData,
    load_dataset,
    load_digits_data,
    load_npz_data,
    split_arrays,
)
from trainers.errors import DataError

N = 50


def _indexed(n: int = N, shape: tuple[int, ...] = (2, 3, 3), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random x, and y = the sample's own index, so a split's labels say which sample went where."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=5.0, scale=3.0, size=(n, *shape)).astype(np.float32)
    return x, np.arange(n)


# ---------------------------------------------------------------- split


def test_split_is_disjoint_and_complete() -> None:
    x, y = _indexed()
    data = split_arrays("t", x, y, val_fraction=0.2, seed=0)
    train, val = data.y_train.tolist(), data.y_val.tolist()
    assert len(val) == 10
    assert len(train) == 40
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(N))
    assert data.n_classes == N
    assert data.input_shape == (2, 3, 3)
    assert data.x_train.dtype == torch.float32
    assert data.y_train.dtype == torch.int64


def test_split_is_seeded_and_ignores_global_rngs() -> None:
    x, y = _indexed()
    np.random.seed(1)
    torch.manual_seed(1)
    a = split_arrays("t", x, y, seed=7)
    np.random.seed(2)
    torch.manual_seed(2)
    b = split_arrays("t", x, y, seed=7)
    c = split_arrays("t", x, y, seed=8)
    assert torch.equal(a.y_val, b.y_val)
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.y_val, c.y_val)


@pytest.mark.parametrize("shape", [(6,), (2, 5), (2, 3, 3)], ids=["features", "1-D maps", "2-D maps"])
def test_standardised_with_train_statistics_only(shape: tuple[int, ...]) -> None:
    x, y = _indexed(shape=shape)
    data = split_arrays("t", x, y, seed=3)
    train, val = data.y_train.numpy(), data.y_val.numpy()
    # Oracle: numpy, per feature (N, F) or per channel (N, C, ...).
    axes = (0,) if len(shape) == 1 else (0, *range(2, x.ndim))
    mean = x[train].astype(np.float64).mean(axis=axes, keepdims=True)
    std = x[train].astype(np.float64).std(axis=axes, ddof=1, keepdims=True)
    np.testing.assert_allclose(data.x_train.numpy(), (x[train] - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(data.x_val.numpy(), (x[val] - mean) / std, rtol=1e-4, atol=1e-4)
    # Validation samples play no part: change them wildly and the train side is unchanged.
    poisoned = x.copy()
    poisoned[val] *= 1000.0
    again = split_arrays("t", poisoned, y, seed=3)
    assert torch.equal(again.x_train, data.x_train)


def test_split_maps_labels_to_class_indices() -> None:
    x, _ = _indexed(n=20)
    y = np.array(["cat", "dog"] * 10)
    data = split_arrays("t", x, y, seed=0)
    assert data.n_classes == 2
    assert set(torch.cat([data.y_train, data.y_val]).tolist()) == {0, 1}


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "named"),
    [
        (np.zeros((10, 4)), np.arange(9), {}, "(10, 4)"),
        (np.zeros(10), np.arange(10), {}, "(10,)"),
        (np.zeros((10, 4)), np.zeros(10), {}, "found 1"),
        (np.zeros((10, 4)), np.arange(10), {"val_fraction": 0.0}, "0.0"),
        (np.zeros((10, 4)), np.arange(10), {"val_fraction": 1.0}, "1.0"),
    ],
)
def test_split_rejects(x: np.ndarray, y: np.ndarray, kwargs: dict, named: str) -> None:
    with pytest.raises(DataError, match=re.escape(named)):
        split_arrays("bad", x, y, **kwargs)


# ---------------------------------------------------------------- batches


def _batches(n: int = 23, **kwargs: object) -> TensorBatches:
    x = torch.arange(n, dtype=torch.float32)[:, None]
    return TensorBatches(x, torch.arange(n), **kwargs)  # type: ignore[arg-type]


def _epoch(batches: TensorBatches) -> list[list[int]]:
    out = []
    for x, y in batches:
        assert torch.equal(x[:, 0].long(), y)  # x and y stay paired
        out.append(y.tolist())
    return out


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n", "batch_size"), [(23, 5), (20, 5), (3, 8), (8, 1)])
def test_every_sample_once_per_epoch(n: int, batch_size: int, shuffle: bool) -> None:
    batches = _batches(n, batch_size=batch_size, shuffle=shuffle, seed=1)
    for _ in range(2):
        epoch = _epoch(batches)
        assert len(epoch) == len(batches) == -(-n // batch_size)
        assert all(len(b) == batch_size for b in epoch[:-1])
        flat = [i for b in epoch for i in b]
        assert sorted(flat) == list(range(n))
        if not shuffle:
            assert flat == list(range(n))


def test_shuffle_changes_between_epochs_and_follows_the_seed() -> None:
    first = _batches(batch_size=4, shuffle=True, seed=3)
    second = _batches(batch_size=4, shuffle=True, seed=3)
    other = _batches(batch_size=4, shuffle=True, seed=4)
    torch.manual_seed(123)  # the global RNG has no say
    epochs = [_epoch(first) for _ in range(3)]
    torch.manual_seed(456)
    assert [_epoch(second) for _ in range(3)] == epochs
    assert epochs[0] != epochs[1] != epochs[2]
    assert _epoch(other) != epochs[0]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n", "world_size", "batch_size"), [(24, 2, 5), (23, 2, 4), (23, 3, 2), (10, 4, 8)])
def test_ranks_get_disjoint_shards_with_equal_batch_counts(
    n: int, world_size: int, batch_size: int, shuffle: bool
) -> None:
    shards = [
        _batches(n, batch_size=batch_size, shuffle=shuffle, seed=5, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    for _ in range(2):  # and again next epoch: every rank reshuffles alike
        epochs = [_epoch(s) for s in shards]
        counts = {len(e) for e in epochs} | {len(s) for s in shards}
        assert len(counts) == 1, "unequal batch counts would hang DDP's collectives"
        samples = [[i for b in e for i in b] for e in epochs]
        assert all(len(s) == n // world_size for s in samples)
        union = [i for s in samples for i in s]
        assert len(set(union)) == len(union) == world_size * (n // world_size)


def test_datamodule_serves_train_shuffled_and_val_in_order(tiny_data: TensorData) -> None:
    dm = InMemoryDataModule(tiny_data, batch_size=32, seed=0)
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert len(train) == 5
    assert sum(len(y) for _, y in train) == len(tiny_data.y_train)
    assert torch.equal(torch.cat([x for x, _ in val]), tiny_data.x_val)
    assert train.shuffle and not val.shuffle


# ---------------------------------------------------------------- npz files


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_npz_loads_a_good_file(tmp_path: Path) -> None:
    x, y = _indexed(n=30, shape=(1, 40))
    path = _save_npz(tmp_path / "signals.npz", x=x, y=y % 3)
    data = load_npz_data(str(path), seed=0)
    assert data.name == "signals"
    assert data.input_shape == (1, 40)
    assert data.n_classes == 3
    assert len(data.y_train) + len(data.y_val) == 30
    again = load_dataset(f"npz:{path}", seed=0)
    assert torch.equal(again.x_val, data.x_val)


def _zip_garbage(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04" + b"\x00garbage" * 8)


def _truncated(path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((50, 4)), y=np.arange(50) % 2)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _corrupt_member(path: Path) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.random.default_rng(0).normal(size=(500, 4)), y=np.arange(500) % 2)
    raw = bytearray(buf.getvalue())
    raw[100:110] = bytes(10)
    path.write_bytes(bytes(raw))


def _plain_npy(path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(3))
    path.write_bytes(buf.getvalue())


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text("x,y\n1,2\n")


def _pickled_objects(path: Path) -> None:
    np.savez(path, x=np.array([{"a": 1}] * 10, dtype=object), y=np.arange(10) % 2)


def _missing_y(path: Path) -> None:
    np.savez(path, x=np.zeros((10, 4)))


def _missing_both(path: Path) -> None:
    np.savez(path, features=np.zeros((10, 4)), labels=np.zeros(10))


@pytest.mark.parametrize(
    ("write", "named"),
    [
        pytest.param(_text, "not a readable npz file", id="text file"),
        pytest.param(_pickled_objects, "not a readable npz file", id="object arrays need pickle"),
        pytest.param(_missing_y, "missing array(s) y", id="missing y"),
        pytest.param(_missing_both, "missing array(s) x, y", id="missing x and y"),
        pytest.param(
            _empty,
            "not a readable npz file",
            id="empty file",
        ),
        pytest.param(
            _zip_garbage,
            "not a readable npz file",
            id="zip header, garbage body",
        ),
        pytest.param(
            _truncated,
            "not a readable npz file",
            id="truncated",
        ),
        pytest.param(
            _corrupt_member,
            "not a readable npz file",
            id="corrupted compressed member",
        ),
        pytest.param(
            _plain_npy,
            "not a readable npz file",
            id="an .npy named .npz",
        ),
    ],
)
def test_npz_bad_files_raise_data_error_naming_the_path(
    tmp_path: Path, write: Callable[[Path], None], named: str
) -> None:
    path = tmp_path / "bad.npz"
    write(path)
    with pytest.raises(DataError) as info:
        load_npz_data(str(path))
    assert str(path) in str(info.value)
    assert named in str(info.value)


def test_npz_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.npz"
    with pytest.raises(DataError, match="not found") as info:
        load_dataset(f"npz:{path}")
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("name", "named"), [("imagenet", "'imagenet'"), ("mnist1d:many", "'many'")])
def test_unknown_dataset_names(name: str, named: str) -> None:
    with pytest.raises(DataError, match=named):
        load_dataset(name)


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------- digits


def test_digits_are_1x8x8_images_in_10_classes() -> None:
    data = load_digits_data(seed=0)
    assert data.name == "digits"
    assert data.input_shape == (1, 8, 8)
    assert data.n_classes == 10
    assert len(data.y_train) + len(data.y_val) == 1797
    assert len(data.y_val) == round(1797 * 0.2)
    assert set(data.y_train.tolist()) == set(range(10))
    assert float(data.x_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert torch.equal(load_dataset("digits", seed=0).x_val, data.x_val)
