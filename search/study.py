"""Open or resume a study and run trials in it: sampler, pruner and storage wiring."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from search.config import ConfigError, RunConfig
from search.explain import TrialExplainer, artifact_store_path
from search.objective import CandidateError, Objective
from search.pruners import make_pruner
from search.storage import create_storage, mask_url
from search.weights import WeightStore, artifact_root
from spaces.spec import CONV_FAMILIES
from trainers.data import TensorData, load_dataset
from trainers.fit import TrainConfig
from trainers.stop import interrupts_deferred, stop_requested

log = logging.getLogger(__name__)

SPACE_ATTR = "varshift.space"  # study user attr: the space a study was created with
DATA_ATTR = "varshift.dataset"


def sampler_seed(config: RunConfig, n_existing: int, worker: int = 0) -> int:
    """The sampler's seed, from the study's trial count (a resumed run does not repeat
    itself) and the worker index within this command, plus:

    * with ``--seed``, that seed alone: the same command on a fresh study proposes the same
      candidates again. Processes started separately on one study (many machines) need
      different seeds, or they propose the same candidates;
    * without it, this process and host, so such processes never collide.

    Trials stay re-runnable either way: each trial's training seed follows from
    ``--seed`` (or 0) and its number alone."""
    entropy = [config.base_seed, n_existing, worker]
    if config.seed is None:
        entropy += [os.getpid(), zlib.crc32(socket.gethostname().encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def make_sampler(config: RunConfig, n_existing: int = 0, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler of this process (see :func:`sampler_seed`)."""
    seed = sampler_seed(config, n_existing, worker)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # multivariate + group model the conditional space (dropout_rate only with dropout);
        # constant_liar keeps parallel workers from sampling the same point.
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=10,
            multivariate=True,
            group=True,
            constant_liar=config.workers > 1,
        )


def build_pruner(config: RunConfig) -> optuna.pruners.BasePruner:
    try:
        return make_pruner(
            config.pruner,
            threshold=config.shift_threshold,
            warmup=config.shift_warmup,
            statistic=config.shift_statistic,
            curve_warmup=config.curve_warmup,
            n_startup_trials=config.n_startup_trials,
            max_epochs=config.max_epochs,
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None


def prepare(config: RunConfig) -> tuple[TensorData, optuna.pruners.BasePruner]:
    """Everything that can fail on a user's mistake, done before any storage is touched."""
    data = load_dataset(
        config.dataset,
        seed=config.base_seed,
        data_dir=config.data_dir,
        download=config.download,
        augment=config.augment,
    )
    space = config.space()
    if space.plugin is None and space.family in CONV_FAMILIES and len(data.input_shape) not in (2, 3):
        raise ConfigError(
            f"family {config.family!r} needs (C, L) or (C, H, W) samples, "
            f"but {config.dataset} gives {data.input_shape}"
        )
    return data, build_pruner(config)


def _space_record(config: RunConfig) -> str:
    return json.dumps(asdict(config.space()), sort_keys=True, default=list)


def open_study(config: RunConfig, pruner: optuna.pruners.BasePruner, data: TensorData) -> optuna.Study:
    """Create the study, or load it and check that it is the same search."""
    storage = create_storage(
        config.storage,
        interval=config.heartbeat_interval,
        grace=config.grace_period,
        retry_seconds=config.storage_retry,
    )
    name = config.resolved_study_name
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing:
        summary = existing[name]
        if summary.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ConfigError(
                f"study {name!r} exists with direction {summary.direction.name.lower()}, not maximize"
            )
        stored = summary.user_attrs.get(SPACE_ATTR)
        if stored is not None and stored != _space_record(config):
            diff = _differences(json.loads(stored), json.loads(_space_record(config)))
            raise ConfigError(
                f"study {name!r} exists with a different search space ({diff}); use another --study-name"
            )
    n_existing = summary.n_trials if name in existing else 0
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(config, n_existing),
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    if name not in existing:
        study.set_user_attr(SPACE_ATTR, _space_record(config))
        study.set_user_attr(DATA_ATTR, data.name)
    log.info("study %s in %s (%d trials so far)", name, mask_url(config.storage), n_existing)
    return study


def _differences(old: dict[str, object], new: dict[str, object]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)} -> {new.get(k)}" for k in keys[:3])


def set_threads(config: RunConfig) -> int:
    """One torch thread per worker unless ``--threads`` says otherwise.

    Measured here (2 cores, a 3x256 MLP on digits): with the other core busy, 2 threads
    took 5.2 s an epoch against 0.23 s for 1 thread, as OpenMP threads wait on each other;
    on an idle machine 2 threads gain little for models this small. Workers share the cores,
    so more threads per worker only oversubscribe them.
    """
    threads = config.threads or 1
    torch.set_num_threads(threads)
    return threads


def train_config(config: RunConfig) -> TrainConfig:
    return TrainConfig(
        max_epochs=config.max_epochs,
        batch_size=config.batch_size,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
    )


class TrialBudget:
    """How many trials this run may still start, shared by its workers.

    ``slots`` is a plain counter for one process or a ``multiprocessing.Value`` shared by
    several; a trial slot is claimed before the trial is asked for, so N workers together
    start exactly ``--n-trials`` trials. ``--timeout`` and ``--total-trials`` (finished and
    running trials of the whole study, all machines included) also end the run.
    """

    def __init__(self, config: RunConfig, slots: Any = None, deadline: float | None = None) -> None:
        self.slots = slots if slots is not None else _LocalCounter(config.n_trials)
        self.deadline = (
            deadline
            if deadline is not None
            else (time.monotonic() + config.timeout if config.timeout else None)
        )
        self.total = config.total_trials

    def claim(self, study: optuna.Study) -> bool:
        if stop_requested():
            return False
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        if self.total is not None:
            # A dead worker's trial is still RUNNING until someone fails it: do that first,
            # or it would count toward the total forever (and its retry would never run).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            busy = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            if len(study.get_trials(deepcopy=False, states=busy)) >= self.total:
                return False
        with self.slots.get_lock():
            if self.slots.value <= 0:
                return False
            self.slots.value -= 1
            return True


class _LocalCounter:
    def __init__(self, value: int) -> None:
        self.value = value

    def get_lock(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


def make_objective(config: RunConfig, study_name: str, data: TensorData) -> Objective:
    return Objective(
        data=data,
        space=config.space(),
        train=train_config(config),
        study_seed=config.base_seed,
        recalibrate=config.recalibrate_bn,
        weights=WeightStore(artifact_root(config.storage, config.artifact_dir), study_name),
        explainer=TrialExplainer(artifact_store_path(config.storage, config.artifact_dir)),
    )


_HEAP_FROZEN = False  # release_memory(freeze=True) has run in this process


def release_memory(*, freeze: bool = False) -> None:
    """Free what the finished trial left in reference cycles (Lightning's Trainer and module
    hold each other), then return cached GPU memory to the driver.

    A full ``gc.collect()`` walks every object in the process: with torch, Lightning and
    matplotlib loaded that is ~0.3 s, longer than a small candidate's whole training. With
    ``freeze``, everything alive now (modules, data set, study caches) moves to the permanent
    generation, so later collections walk only what trials allocate: call it after the first
    trial, when the lazy imports trials trigger have happened."""
    gc.collect()
    if freeze:
        gc.freeze()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_trials(
    config: RunConfig,
    study: optuna.Study,
    data: TensorData,
    budget: TrialBudget,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> None:
    """Run trials while the budget lasts; a trial whose candidate cannot train FAILs and the
    study goes on. Ctrl-C marks the running trial FAIL and re-raises: finished trials stay."""
    global _HEAP_FROZEN
    objective = make_objective(config, study.study_name, data)
    while budget.claim(study):
        with interrupts_deferred():  # the objective turns them on again (see Objective.__call__)
            study.optimize(objective, n_trials=1, catch=(CandidateError,), callbacks=list(callbacks))
        # Freeze once per process: a later run_trials (several studies in one process) would
        # otherwise freeze the previous study's objects, which then could never be collected.
        release_memory(freeze=not _HEAP_FROZEN)
        _HEAP_FROZEN = True
    if stop_requested():  # the interrupt landed between trials, where Python may swallow it
        raise KeyboardInterrupt
