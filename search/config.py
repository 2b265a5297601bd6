"""The run configuration: defaults <- ``--config FILE.toml`` <- command-line options.

Every option is one field of :class:`RunConfig`; a TOML file holds the same names
(``n-trials`` or ``n_trials``) as top-level keys. All checking happens here, before a
storage is opened, so a user's mistake costs one line and writes nothing.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from search.storage import DEFAULT_STORAGE, check_url
from spaces import SpaceConfig, SpecError
from spaces.plugins import resolve_family
from spaces.spec import check_choice

SAMPLERS = ("tpe", "random", "qmc")
RECALIBRATE = ("auto", "always", "never")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


class ConfigError(ValueError):
    """A bad option value; the message is the single line the user sees."""


@dataclass(frozen=True)
class RunConfig:
    """Everything ``search run`` needs. Defaults make a real search in about two minutes."""

    study_name: str | None = None  # default: "<dataset>-<family>", so a rerun resumes
    storage: str = DEFAULT_STORAGE  # any SQLAlchemy URL
    n_trials: int = 40  # trials this invocation adds (all its workers together)
    total_trials: int | None = None  # stop once the study holds this many finished + running
    timeout: float | None = None  # seconds; stop starting new trials after it
    dataset: str = "digits"
    data_dir: str = "data"  # where torchvision data sets are (or are downloaded to)
    download: bool = False  # let torchvision download a missing data set (needs internet)
    augment: bool = True  # random crop (and flip for CIFAR) on image data sets
    family: str = "mlp"
    max_epochs: int = 20
    batch_size: int = 64
    pruner: str = "varshift+median"
    # Defaults chosen by benchmarks/pruning_replay.py (10 settings x 60 candidates x 50 orders,
    # the family spaces and the placement space): varshift (dropout-induced > 2.0 after 1 epoch)
    # + median (warm-up 3) found the best accuracy in >= 98% of the orders of every setting at
    # 0.40 of the epochs. A lower threshold or warm-up lost winners of the placement space.
    shift_threshold: float = 2.0  # prune when the shift statistic is above this
    shift_warmup: int = 1  # epochs before the shift guard may prune
    shift_statistic: str = "dropout"  # "dropout" (dropout-induced) or "paper"
    curve_warmup: int = 3  # epochs before the curve pruner (median/hyperband) may prune
    n_startup_trials: int = 5  # trials the median pruner waits for
    sampler: str = "tpe"
    seed: int | None = None  # None: data split and training seeds from 0, sampler seeded per process
    workers: int = 1  # parallel trial processes, one device each
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats in the storage
    grace_period: int = 60  # a trial silent this long is failed and retried (its worker died)
    storage_retry: float = 60.0  # seconds to keep retrying a storage that went away, then exit 1
    devices: int = 1  # devices inside one trial
    strategy: str = "auto"  # Lightning strategy inside a trial, e.g. "ddp"
    accelerator: str = "auto"
    threads: int = 0  # torch threads per worker; 0 = auto (1: small models, no oversubscription)
    bn: str = "search"  # "search" BN's presence per block, or fix it: "always", "never"
    dropout: str = "search"  # "search": a block may go without dropout; "always": every block has it
    placements: tuple[str, ...] | None = None  # where dropout may go: "blocks", "head" (after the last BN)
    per_block: bool = False  # choose BN/Dropout/activation per block instead of shared
    depth: tuple[int, int] | None = None  # None: the family's default range
    widths: tuple[int, ...] | None = None
    activations: tuple[str, ...] | None = None
    dropout_kinds: tuple[str, ...] | None = None
    dropout_rate: tuple[float, float] | None = None
    orders: tuple[str, ...] | None = None
    lr: tuple[float, float] | None = None
    weight_decay: tuple[float, float] | None = None
    artifact_dir: str | None = None  # weights (and plots) of trials; default beside the SQLite file
    recalibrate_bn: str = "auto"  # re-estimate BN statistics after training: auto/always/never
    quiet: bool = False

    @property
    def resolved_study_name(self) -> str:
        dataset = self.dataset.split(":")[0]
        family = self.family.replace(":", ".")  # module:function families
        return self.study_name or f"{dataset}-{family}"

    @property
    def base_seed(self) -> int:
        """The seed of the data split and of every trial's training: ``--seed``, else 0."""
        return 0 if self.seed is None else self.seed

    def space(self) -> SpaceConfig:
        """The search space these options describe (validated)."""
        overrides = {
            name: getattr(self, name)
            for name in (
                "depth",
                "widths",
                "activations",
                "dropout_kinds",
                "dropout_rate",
                "placements",
                "orders",
                "lr",
                "weight_decay",
            )
            if getattr(self, name) is not None
        }
        try:
            space_family, plugin = resolve_family(self.family)
        except SpecError as err:
            raise ConfigError(str(err)) from None
        if self.bn != "search":
            overrides["bn_choices"] = (self.bn == "always",)
        if self.dropout == "always":
            overrides["allow_no_dropout"] = False
        try:
            return SpaceConfig.for_family(
                space_family, share_blocks=not self.per_block, plugin=plugin, **overrides
            )
        except SpecError as err:
            raise ConfigError(str(err)) from None


_FIELDS = {f.name: f for f in fields(RunConfig)}
_INT = {
    "n_trials",
    "total_trials",
    "heartbeat_interval",
    "grace_period",
    "max_epochs",
    "batch_size",
    "shift_warmup",
    "curve_warmup",
    "n_startup_trials",
    "seed",
    "workers",
    "devices",
    "threads",
}
_FLOAT = {"timeout", "shift_threshold", "storage_retry"}
_BOOL = {"per_block", "quiet", "download", "augment"}
_STR_LIST = {"activations", "dropout_kinds", "orders", "placements"}
_RANGES = {"depth": int, "dropout_rate": float, "lr": float, "weight_decay": float}
_MINIMUM = {
    "n_trials": 1,
    "total_trials": 1,
    "heartbeat_interval": 1,
    "grace_period": 1,
    "max_epochs": 1,
    "batch_size": 1,
    "workers": 1,
    "devices": 1,
    "shift_warmup": 0,
    "curve_warmup": 0,
    "n_startup_trials": 0,
    "threads": 0,
    "seed": 0,
}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML value or a command-line string into the field's type, or fail in one line."""
    opt = "--" + name.replace("_", "-")
    try:
        if name in _INT:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out: Any = int(value)
            if out < _MINIMUM[name]:
                raise ConfigError(f"{opt} must be >= {_MINIMUM[name]}, but got {value}")
            return out
        if name in _FLOAT:
            out = float(value)
            if not math.isfinite(out) or out <= 0:
                raise ConfigError(f"{opt} must be a positive number, but got {value}")
            return out
        if name in _BOOL:
            if isinstance(value, bool):
                return value
            raise ValueError
        if name in _STR_LIST:
            items = value.split(",") if isinstance(value, str) else list(value)
            out = tuple(str(v).strip() for v in items if str(v).strip())
            if not out:
                raise ConfigError(f"{opt} needs at least one choice, but got an empty list")
            return out
        if name == "widths":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(int(v) for v in items)
        if name in _RANGES:
            return _range(opt, value, _RANGES[name])
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError, OverflowError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{opt}: invalid value {value!r}") from None


def _range(opt: str, value: Any, kind: type) -> tuple[Any, Any]:
    items = (
        value.split(",") if isinstance(value, str) else (list(value) if isinstance(value, list) else [value])
    )
    if len(items) == 1:
        items = items * 2
    if len(items) != 2 or any(isinstance(v, bool) for v in items):
        raise ConfigError(f"{opt} takes LOW,HIGH, but got {value!r}")
    low, high = (kind(v) for v in items)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"{opt} range must be finite, but got {value!r}")
    if low > high:
        raise ConfigError(f"{opt} range is empty: {low} > {high}")
    return low, high


def _canonical_key(key: str) -> str:
    name = key.replace("-", "_")
    if name not in _FIELDS:
        close = difflib.get_close_matches(name, list(_FIELDS), n=1)
        hint = f"; did you mean {close[0].replace('_', '-')!r}?" if close else ""
        raise ConfigError(f"unknown option {key!r}{hint}")
    return name


def load_toml(path: str) -> dict[str, Any]:
    """Read a config file into option values (unchecked names become one-line errors)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with file.open("rb") as f:  # binary, as tomllib wants: no newline translation
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid TOML: {str(err).splitlines()[0]}") from None
    return data


def build_config(
    file_values: dict[str, Any] | None = None, cli_values: dict[str, Any] | None = None
) -> RunConfig:
    """Merge defaults, file values and command-line values (None means 'not given'), then check."""
    merged: dict[str, Any] = {}
    for source in (file_values or {}, cli_values or {}):
        for key, value in source.items():
            if value is None:
                continue
            if isinstance(value, dict):
                raise ConfigError(f"option {key!r} must be a value, not a table")
            name = _canonical_key(key)
            merged[name] = _coerce(name, value)
    config = replace(RunConfig(), **merged)
    validate(config)
    return config


def validate(config: RunConfig) -> None:
    """Cross-field checks; raises :class:`ConfigError` with one line."""
    try:
        check_choice("sampler", config.sampler, SAMPLERS)
        check_choice("--recalibrate-bn value", config.recalibrate_bn, RECALIBRATE)
        check_choice("accelerator", config.accelerator, ACCELERATORS)
        check_choice("shift statistic", config.shift_statistic, ("dropout", "paper"))
        check_choice("--bn value", config.bn, ("search", "always", "never"))
        check_choice("--dropout value", config.dropout, ("search", "always"))
    except SpecError as err:
        raise ConfigError(str(err)) from None
    if config.shift_threshold <= 1.0:
        raise ConfigError(
            f"--shift-threshold must be > 1 (1 means no shift), but got {config.shift_threshold}"
        )
    if config.devices > 1 and config.strategy not in ("auto", "ddp"):
        raise ConfigError(
            f"--strategy {config.strategy!r} with --devices {config.devices}: use 'ddp' "
            "(varshift launches the ranks itself, so only rank 0 talks to the storage)"
        )
    if config.grace_period <= config.heartbeat_interval:
        raise ConfigError(
            f"--grace-period ({config.grace_period}) must exceed --heartbeat-interval ({config.heartbeat_interval})"
        )
    if not config.resolved_study_name.strip():
        raise ConfigError("--study-name must not be empty")
    check_url(config.storage)
    config.space()
