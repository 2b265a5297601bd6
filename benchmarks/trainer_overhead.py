"""Time per epoch of varshift's trainer against a plain PyTorch loop, side by side.

Same model, data, batch size and optimiser; runs interleaved (plain, ours, plain, ...)
so that machine noise hits both alike; reports median ratios. Also measures the cost of
the variance-shift probes (paper statistic only, and both statistics).

    python benchmarks/trainer_overhead.py            # writes benchmarks/results/trainer_overhead.{md,json}
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from spaces import ArchitectureSpec, BlockSpec
from trainers.data import TensorData, load_digits_data
from trainers.fit import TrainConfig, train_candidate
from trainers.model import build_model

RESULTS = Path(__file__).parent / "results"
SPEC = ArchitectureSpec(
    family="mlp",
    input_shape=(1, 8, 8),
    n_classes=10,
    blocks=(
        BlockSpec(128, "relu", True, "bernoulli", 0.3, ("bn", "act", "drop")),
        BlockSpec(128, "relu", True, None, 0.0, ("bn", "act", "drop")),
    ),
    lr=1e-3,
)


def plain_loop(data: TensorData, epochs: int, batch_size: int, seed: int) -> float:
    """The reference: a hand-written loop over the same in-memory tensors."""
    torch.manual_seed(seed)
    model = build_model(SPEC)
    opt = torch.optim.AdamW(model.parameters(), lr=SPEC.lr, weight_decay=SPEC.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(data.x_train), generator=gen)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(data.x_val[i : i + 512]).argmax(1) == data.y_val[i : i + 512]).sum().item()
                for i in range(0, len(data.x_val), 512)
            )
        _ = correct / len(data.x_val)
    return (time.perf_counter() - start) / epochs


def usual_lightning(data: TensorData, epochs: int, batch_size: int, seed: int) -> float:
    """Lightning written the usual way: TensorDataset + DataLoader, self.log every step."""
    import pytorch_lightning as pl

    class Usual(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = build_model(SPEC)

        def training_step(self, batch, _):  # type: ignore[no-untyped-def]
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):  # type: ignore[no-untyped-def]
            x, y = batch
            self.log("val_acc", (self.model(x).argmax(1) == y).float().mean())

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.AdamW(self.parameters(), lr=SPEC.lr)

    torch.manual_seed(seed)
    train = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=512)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(Usual(), train, val)
    return (time.perf_counter() - start) / epochs


def ours(data: TensorData, epochs: int, batch_size: int, seed: int, *, shift: str) -> float:
    config = TrainConfig(
        max_epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        accelerator="cpu",
        measure_shift=shift != "none",
        dropout_batches=4 if shift == "both" else 0,
    )
    result = train_candidate(SPEC, data, config)
    return result.train_seconds / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    data = load_digits_data()
    runs = {
        "plain loop": lambda s: plain_loop(data, args.epochs, args.batch_size, s),
        "usual Lightning (DataLoader, log per step)": lambda s: usual_lightning(
            data, args.epochs, args.batch_size, s
        ),
        "varshift trainer, no shift probes": lambda s: ours(
            data, args.epochs, args.batch_size, s, shift="none"
        ),
        "varshift trainer, paper statistic": lambda s: ours(
            data, args.epochs, args.batch_size, s, shift="paper"
        ),
        "varshift trainer, both statistics": lambda s: ours(
            data, args.epochs, args.batch_size, s, shift="both"
        ),
    }
    for fn in runs.values():  # warm-up: imports, allocator, first Trainer
        fn(0)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for rep in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(fn(rep + 1))
    base = statistics.median(times["plain loop"])
    ratios = {
        name: statistics.median(t / p for t, p in zip(ts, times["plain loop"], strict=True))
        for name, ts in times.items()
    }
    write(args, times, ratios, base)


def write(
    args: argparse.Namespace, times: dict[str, list[float]], ratios: dict[str, float], base: float
) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    no_probe = times["varshift trainer, no shift probes"]
    probe_cost = {
        name: statistics.median(t / n - 1 for t, n in zip(times[name], no_probe, strict=True))
        for name in ("varshift trainer, paper statistic", "varshift trainer, both statistics")
    }
    lines = [
        f"# Trainer overhead: digits, MLP 2x128 with BN and Dropout, batch {args.batch_size}, "
        f"{args.epochs} epochs, {args.repeats} interleaved repeats, {args.threads} torch thread(s)",
        "",
        "| trainer | median ms / epoch | median ratio to plain loop |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {statistics.median(t) * 1e3:.1f} | {ratios[n]:.2f}x |" for n, t in times.items()]
    lines += ["", "| shift probe | median extra time per epoch vs no probes |", "|---|---|"]
    lines += [f"| {n.split(', ')[1]} | {c * 100:+.1f}% |" for n, c in probe_cost.items()]
    (args.out / "trainer_overhead.md").write_text("\n".join(lines) + "\n")
    (args.out / "trainer_overhead.json").write_text(
        json.dumps({"seconds_per_epoch": times, "ratio_to_plain": ratios, "probe_cost": probe_cost}, indent=2)
    )
    print("\n".join(lines))
    print(f"plain loop: {base * 1e3:.1f} ms/epoch")


if __name__ == "__main__":
    main()
