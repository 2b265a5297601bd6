"""``--workers N``: N processes share one study through its storage, one device each.

The parent opens (or creates) the study, then starts the spawned workers; on the CPU the
parent itself is worker 0. Each worker pins itself to its device (its own GPUs through
``CUDA_VISIBLE_DEVICES``, or one torch thread per worker on the CPU), claims trial slots
from a shared counter and runs them; finished trials flow back through a queue to the
parent's single progress display.

Ctrl-C reaches every process of the terminal's process group: each worker marks its running
trial FAIL and exits. A SIGTERM sent to the parent alone is forwarded to the workers.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna

from search import interrupts
from search.config import RunConfig
from search.storage import create_storage
from search.study import TrialBudget, build_pruner, make_sampler, prepare, run_trials, set_threads
from trainers.data import TensorData
from trainers.ddp import environ
from trainers.stop import stop_requested

log = logging.getLogger(__name__)

Event = tuple[int, str, float | None]  # (trial number, state name, value)
JOIN_TIMEOUT = 60.0  # seconds a worker gets to mark its trial FAIL after an interrupt


def gpu_groups(n_workers: int, per_trial: int, accelerator: str) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` of each worker, or None each when no GPU is used."""
    if accelerator == "cpu":
        return [None] * n_workers
    import torch

    count = torch.cuda.device_count()  # NVML query: does not initialise CUDA in the parent
    if count == 0:
        return [None] * n_workers
    if n_workers * per_trial > count:
        log.warning("%d workers x %d GPUs > %d GPUs: workers share GPUs", n_workers, per_trial, count)
    return [",".join(str((w * per_trial + d) % count) for d in range(per_trial)) for w in range(n_workers)]


def _worker(config: RunConfig, index: int, slots: Any, deadline: float | None, events: Any) -> None:
    """One worker process: load the study and run trials while slots remain."""
    interrupts.install()
    try:
        from search.runner import quiet_libraries

        quiet_libraries()
        set_threads(config)
        data, _ = prepare(config)
        storage = create_storage(
            config.storage,
            interval=config.heartbeat_interval,
            grace=config.grace_period,
            retry_seconds=config.storage_retry,
        )
        n_existing = len(optuna.load_study(study_name=config.resolved_study_name, storage=storage).trials)
        study = optuna.load_study(
            study_name=config.resolved_study_name,
            storage=storage,
            sampler=make_sampler(config, n_existing, worker=index),
            pruner=build_pruner(config),
        )

        def report(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            events.put((trial.number, trial.state.name, trial.value))

        run_trials(config, study, data, TrialBudget(config, slots, deadline), callbacks=[report])
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def run_workers(
    config: RunConfig,
    on_event: Callable[[Event], None],
    study: optuna.Study | None = None,
    data: TensorData | None = None,
) -> None:
    """Run ``config.workers`` workers on the (already opened) study and wait for them.

    On the CPU, given the parent's ``study`` and ``data``, the parent is worker 0: it trains
    while the spawned workers start (a spawned worker spends ~5 s importing torch and
    Lightning before its first trial). With GPUs every worker is spawned, so each one pins
    its own GPUs through ``CUDA_VISIBLE_DEVICES`` before CUDA starts."""
    ctx = mp.get_context("spawn")
    slots = ctx.Value("i", config.n_trials)
    events: Any = ctx.Queue()
    deadline = time.time() + config.timeout if config.timeout else None
    groups = gpu_groups(config.workers, config.devices, config.accelerator)
    in_parent = study is not None and data is not None and all(g is None for g in groups)
    procs: list[Any] = []
    try:
        for index, gpus in enumerate(groups):
            if index == 0 and in_parent:
                continue
            with environ(CUDA_VISIBLE_DEVICES=gpus), _child_ignores_sigint():
                proc = ctx.Process(
                    target=_worker,
                    args=(config, index, slots, _monotonic_deadline(deadline), events),
                    name=f"varshift-worker-{index}",
                )
                proc.start()
            procs.append(proc)
        if in_parent:
            assert study is not None and data is not None

            def own(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
                on_event((trial.number, trial.state.name, trial.value))
                _drain(events, on_event, timeout=0.0)

            budget = TrialBudget(config, slots, _monotonic_deadline(deadline))
            run_trials(config, study, data, budget, callbacks=[own])
        while any(p.is_alive() for p in procs):
            if stop_requested():  # an interrupt swallowed in a finaliser still stops them all
                raise KeyboardInterrupt
            _drain(events, on_event, timeout=0.5)
        _drain(events, on_event, timeout=0.0)
    except BaseException:  # Ctrl-C, SIGTERM, or the parent's own trials failing: stop them all
        _stop(procs, events, on_event)
        raise
    failed = [p for p in procs if p.exitcode not in (0, 130)]
    if any(p.exitcode == 130 for p in procs):
        raise KeyboardInterrupt
    if failed:
        raise RuntimeError(f"{len(failed)} worker(s) failed, exit codes {[p.exitcode for p in failed]}")


@contextlib.contextmanager
def _child_ignores_sigint() -> Iterator[None]:
    """Start a worker with SIGINT ignored (an ignored signal stays ignored across exec, and
    Python then installs no KeyboardInterrupt handler), until ``_worker`` installs its own.

    A Ctrl-C that lands while the worker is still importing torch would otherwise print a
    traceback from the middle of an import. The parent gets the same Ctrl-C and sends every
    worker SIGTERM, which ends a still-starting worker silently (it has no trial yet)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _monotonic_deadline(wall_deadline: float | None) -> float | None:
    # Workers compare against time.monotonic(), which each process shares on one machine.
    return None if wall_deadline is None else time.monotonic() + (wall_deadline - time.time())


def _drain(events: Any, on_event: Callable[[Event], None], timeout: float) -> None:
    try:
        event = events.get(timeout=timeout) if timeout else events.get_nowait()
    except queue.Empty:
        return
    on_event(event)
    while True:
        try:
            on_event(events.get_nowait())
        except queue.Empty:
            return


def _stop(procs: list[Any], events: Any, on_event: Callable[[Event], None]) -> None:
    """After Ctrl-C (already delivered to the workers) or a SIGTERM to the parent alone:
    make sure every worker gets an interrupt, then wait for them to close their trials.
    Events are drained meanwhile: a worker cannot exit while its queue buffer is unread."""
    for proc in procs:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + JOIN_TIMEOUT
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        _drain(events, on_event, timeout=0.2)
    for proc in procs:
        if proc.is_alive():
            log.warning("worker %s did not stop in %.0f s; killing it", proc.name, JOIN_TIMEOUT)
            proc.kill()
        proc.join()
