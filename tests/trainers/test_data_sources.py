"""csv:PATH and data set functions (module:function): (x, y), TensorData, LightningDataModule."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.data import DataError, TensorData, load_dataset


def test_csv_with_label_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    y = (x[:, 0] > 0).astype(int)
    rows = ["a,label,b,c", *(f"{r[0]},{lab},{r[1]},{r[2]}" for r, lab in zip(x, y, strict=True))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(f"csv:{tmp_path / 't.csv'}")
    assert data.input_shape == (3,) and data.n_classes == 2 and len(data.x_train) + len(data.x_val) == 100


@pytest.mark.parametrize(
    ("content", "message"),
    [("a,b\n1,x\n2,y\n", "non-numeric"), ("only\n1\n", "need a header")],
)
def test_bad_csv(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(f"csv:{tmp_path / 'bad.csv'}")
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"csv:{tmp_path / 'none.csv'}")


@pytest.fixture
def data_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_data.py").write_text(
        "import numpy as np, torch, pytorch_lightning as pl\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "def arrays(seed=0):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    return rng.normal(size=(50, 4)), rng.integers(0, 3, 50)\n"
        "def tensors():\n"
        "    return torch.randn(40, 2, 5), torch.arange(40) % 2\n"
        "class DM(pl.LightningDataModule):\n"
        "    def train_dataloader(self):\n"
        "        return DataLoader(TensorDataset(torch.randn(30, 1, 8, 8), torch.arange(30) % 4), batch_size=8)\n"
        "    def val_dataloader(self):\n"
        "        return DataLoader(TensorDataset(torch.randn(10, 1, 8, 8), torch.arange(10) % 4), batch_size=8)\n"
        "def module():\n"
        "    return DM()\n"
        "def wrong():\n"
        "    return 'not data'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_data", None)
    return "my_data"


def test_dataset_functions(data_module: str) -> None:
    a = load_dataset(f"{data_module}:arrays")
    assert a.input_shape == (4,) and a.n_classes == 3
    t = load_dataset(f"{data_module}:tensors")
    assert t.input_shape == (2, 5) and t.n_classes == 2
    m = load_dataset(f"{data_module}:module")
    assert isinstance(m, TensorData) and m.input_shape == (1, 8, 8) and len(m.x_train) == 30
    assert m.n_classes == 4 and m.y_val.dtype == torch.long
    with pytest.raises(DataError, match="returned str"):
        load_dataset(f"{data_module}:wrong")
    with pytest.raises(DataError, match="cannot import"):
        load_dataset("no_such_pkg_abc:load")
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
