"""Several devices inside one trial: Lightning's ``ddp`` with ranks we launch ourselves.

Lightning's own ``ddp`` launcher re-runs the command line once per rank, so every rank of
an Optuna script samples its own trial (optuna-integration's known gap). Here the process
that holds the trial is rank 0; it starts ranks 1..K-1 as spawned processes that receive
the frozen spec, data and config, sets ``LOCAL_RANK``/``MASTER_*`` so Lightning treats the
ranks as externally launched, and trains as rank 0. Only rank 0 reports to the storage;
the stop decision is broadcast by the ``ShiftReporter`` so every rank stops together.
Each trial gets a fresh process group, destroyed when it ends.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from spaces.spec import ArchitectureSpec

if TYPE_CHECKING:
    from trainers.callbacks import EpochReport
    from trainers.data import TensorData
    from trainers.fit import TrainConfig, TrainResult

log = logging.getLogger(__name__)

RANK_LOG_ENV = "VARSHIFT_RANK_LOG"  # a folder: each rank appends what it trained (debugging)
JOIN_TIMEOUT = 120.0


@contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Set (``None``: leave) environment variables inside the block; children spawned in it
    inherit them."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is not None:
                os.environ[key] = value
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_distributed(
    spec: ArchitectureSpec,
    data: TensorData,
    config: TrainConfig,
    reporter: Callable[[EpochReport], str | None] | None,
) -> TrainResult:
    """Train on ``config.devices`` ranks; this process is rank 0 and alone calls ``reporter``."""
    from trainers.fit import fit_local

    world = int(config.devices)
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "NODE_RANK": "0"}
    ctx = mp.get_context("spawn")
    ranks = []
    for rank in range(1, world):
        with environ(**env, LOCAL_RANK=str(rank)):
            proc = ctx.Process(target=_rank_main, args=(spec, data, config), name=f"varshift-rank-{rank}")
            proc.start()
        ranks.append(proc)
    try:
        with environ(**env, LOCAL_RANK="0"):
            result = fit_local(spec, data, config, reporter)
        log_rank(0, spec, result.epochs)
    finally:
        _destroy_group()
        for proc in ranks:
            proc.join(JOIN_TIMEOUT)
            if proc.is_alive():
                log.warning("rank process %s did not finish; killing it", proc.name)
                proc.kill()
                proc.join()
    failed = [p.name for p in ranks if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"DDP rank(s) {', '.join(failed)} failed; see their log above")
    return result


def _rank_main(spec: ArchitectureSpec, data: TensorData, config: TrainConfig) -> None:
    """A non-zero rank: train the same spec, report nothing, stop when rank 0 says so."""
    import torch

    from trainers.fit import fit_local

    torch.set_num_threads(1)
    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        result = fit_local(spec, data, config, reporter=None)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        _destroy_group()
    log_rank(int(os.environ["LOCAL_RANK"]), spec, result.epochs)


def _destroy_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def log_rank(rank: int, spec: ArchitectureSpec, epochs: int) -> None:
    """With ``VARSHIFT_RANK_LOG`` set, record what this rank trained (tests read it)."""
    folder = os.environ.get(RANK_LOG_ENV)
    if not folder:
        return
    record: dict[str, Any] = {
        "rank": rank,
        "pid": os.getpid(),
        "architecture": spec.describe(),
        "epochs": epochs,
    }
    with open(os.path.join(folder, "ranks.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
