"""``trainers.lint``: each rule fires where it must and stays quiet where it must, on hand-built
models (torchvision-style ResNet and VGG written here, no torchvision), with the DESIGN.md
formulas as the oracle for the expected and the measured ratio."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.data import TensorData
from trainers.layers import GaussianDropout, Uout
from trainers.lint import LintError, lint_model, load_target, load_weights, parse_input_shape
from trainers.lint_kinds import DropoutInfo
from trainers.lint_measure import measure_model
from trainers.lint_rules import expected_ratio
from trainers.recalibrate import accuracy, recalibrate_bn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGE = (3, 16, 16)


# --- torchvision-style definitions, small -----------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock; ``drop`` optionally sits between relu and conv2."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, drop: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.drop = drop or nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.drop(out)))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(
        self, block_drop: Callable[[], nn.Module] | None = None, head_drop: float = 0.0, classes: int = 10
    ) -> None:
        super().__init__()
        make = block_drop or (lambda: nn.Identity())
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, drop=make()), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2), BasicBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(head_drop) if head_drop else nn.Identity()
        self.fc = nn.Linear(16, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def vgg(batch_norm: bool, feature_drop: float = 0.0) -> nn.Module:
    """torchvision's VGG layout: conv features, then Linear-ReLU-Dropout twice and the classifier."""
    layers: list[nn.Module] = []
    channels = 3
    for v in (8, "M", 16, 16, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        assert isinstance(v, int)
        layers += [nn.Conv2d(channels, v, 3, padding=1)]
        layers += [nn.BatchNorm2d(v), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
        if feature_drop:
            layers.append(nn.Dropout(feature_drop))
        channels = v
    return nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d((2, 2)),
        nn.Flatten(),
        nn.Sequential(
            nn.Linear(64, 32),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(32, 32),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(32, 10),
        ),
    )


class DataDependent(nn.Module):
    """Wraps any model behind control flow that fx cannot trace."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:
            return self.inner(x)
        return self.inner(-x)


def found(model: nn.Module, shape: tuple[int, ...] | None = IMAGE) -> set[tuple[str, str]]:
    return {(f.rule.name, f.module) for f in lint_model(model, shape).findings}


# --- the architectures of the issue -------------------------------------------------------------


@pytest.mark.parametrize("head_drop", [0.0, 0.5])
def test_resnet_with_or_without_head_dropout_is_clean(head_drop: float) -> None:
    report = lint_model(ResNet(head_drop=head_drop), IMAGE)
    assert report.tracer == "fx" and report.tracer_note == "traced with torch.fx"
    assert report.findings == [] and report.exit_code == 0


def test_resnet_dropout_before_the_second_conv_shifts_bn2() -> None:
    report = lint_model(ResNet(block_drop=lambda: nn.Dropout(0.3)), IMAGE)
    assert {(f.rule.name, f.module) for f in report.findings} == {
        ("VS001", "layer1.0.bn2"),
        ("VS003", "layer1.0.drop"),
    }
    vs001 = next(f for f in report.findings if f.rule.name == "VS001")
    assert vs001.expected_ratio == pytest.approx(1 / 0.7)
    assert "layer1.0.drop" in vs001.message and "through layer1.0.conv2" in vs001.message
    assert report.exit_code == 1


def test_channel_dropout_in_a_block_still_shifts_but_is_not_element_wise() -> None:
    assert found(ResNet(block_drop=lambda: nn.Dropout2d(0.2))) == {("VS001", "layer1.0.bn2")}


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg_classifier_dropout_between_linears_is_clean(batch_norm: bool) -> None:
    assert found(vgg(batch_norm)) == set()


def test_vgg_with_dropout_in_the_features_breaks_two_rules() -> None:
    got = found(vgg(batch_norm=True, feature_drop=0.2))
    # Each conv's dropout feeds the next conv's BN; the last one feeds no BN.
    assert {m for r, m in got if r == "VS001"} == {"0.6", "0.10"}
    assert {m for r, m in got if r == "VS003"} == {"0.3", "0.8", "0.12"}


def test_dropout_only_before_the_classifier_is_clean() -> None:
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(48, 32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(32, 10),
    )
    assert found(model, (3, 4, 4)) == set()


@pytest.mark.parametrize(
    "model",
    [
        ResNet(block_drop=lambda: nn.Dropout(0.3)),
        ResNet(head_drop=0.5),
        vgg(batch_norm=True, feature_drop=0.2),
        vgg(batch_norm=False),
    ],
    ids=["resnet-drop", "resnet-head", "vgg-bn-drop", "vgg"],
)
def test_hooks_fallback_finds_what_fx_finds(model: nn.Module) -> None:
    report = lint_model(DataDependent(model), IMAGE)
    assert report.tracer == "hooks"
    assert report.tracer_note.startswith("fx could not trace (")
    assert report.tracer_note.endswith("; used forward hooks")
    assert "control flow" in report.tracer_note
    assert {(r, m.removeprefix("inner.")) for r, m in found(DataDependent(model))} == found(model)


def test_fallback_without_an_input_shape_asks_for_one() -> None:
    with pytest.raises(LintError, match=r"fx could not trace .*--input-shape"):
        lint_model(DataDependent(ResNet()), None)


def test_wrong_input_shape_is_one_line() -> None:
    with pytest.raises(LintError, match=r"does not run on a dummy input of shape \(2, 5\)") as err:
        lint_model(nn.Sequential(nn.Linear(4, 2)), (5,))
    assert "\n" not in str(err.value)


# --- VS001: what feeds a BN ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "ratio"),
    [
        (nn.Dropout(0.5), 2.0),
        (nn.Dropout(0.2), 1.25),
        (GaussianDropout(0.5), 2.0),  # 1 + s^2, s^2 = q/(1-q) = 1
        (Uout(0.5), (3 + 0.25) / 3),  # (3 + b^2) / 3
        (nn.AlphaDropout(0.5), None),  # keeps the variance by design
        (nn.Dropout(0.0), None),
    ],
)
def test_vs001_expected_ratio_follows_the_design_formulas(drop: nn.Module, ratio: float | None) -> None:
    report = lint_model(nn.Sequential(nn.Linear(8, 8), drop, nn.BatchNorm1d(8)), (8,))
    ratios = [f.expected_ratio for f in report.findings if f.rule.name == "VS001"]
    assert ratios == ([] if ratio is None else [pytest.approx(ratio)])


def test_expected_ratio_is_the_c_zero_case_of_the_general_formula() -> None:
    for q in (0.1, 0.3, 0.5, 0.7):
        p = 1 - q
        general = 1 / p + (0.0**2 / 1.0) * (1 / p - 1)
        assert expected_ratio(DropoutInfo("bernoulli", q)) == pytest.approx(general)
        assert expected_ratio(DropoutInfo("gaussian", q)) == pytest.approx(general)
    assert math.isinf(expected_ratio(DropoutInfo("bernoulli", 1.0)))


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([nn.Dropout(0.5), nn.BatchNorm1d(8)], {"1"}),
        ([nn.Dropout(0.5), nn.Linear(8, 8), nn.BatchNorm1d(8)], {"2"}),
        ([nn.Dropout(0.5), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8)], {"4"}),
        # another BN resets the variance: only the first is fed by the dropout
        ([nn.Dropout(0.5), nn.BatchNorm1d(8), nn.Linear(8, 8), nn.BatchNorm1d(8)], {"1"}),
        ([nn.Dropout(0.5), nn.LayerNorm(8), nn.Linear(8, 8), nn.BatchNorm1d(8)], set()),
        ([nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)], set()),
    ],
    ids=["direct", "linear", "linear-relu-linear", "bn-resets", "layernorm-resets", "after-last-bn"],
)
def test_vs001_walks_through_linear_layers_only(layers: list[nn.Module], expected: set[str]) -> None:
    assert {m for r, m in found(nn.Sequential(*layers), (8,)) if r == "VS001"} == expected


class FunctionalDropout(nn.Module):
    def __init__(self, training: bool | None) -> None:
        super().__init__()
        self.fc, self.bn, self.when = nn.Linear(8, 8), nn.BatchNorm1d(8), training

    def forward(self, x: Tensor) -> Tensor:
        active = self.training if self.when is None else self.when
        return self.bn(F.dropout(self.fc(x), 0.4, active))


def test_functional_dropout_is_found_along_the_fx_graph() -> None:
    report = lint_model(FunctionalDropout(None).eval(), (8,))  # traced as in training
    assert [(f.rule.name, f.module, f.expected_ratio) for f in report.findings] == [
        ("VS001", "bn", pytest.approx(1 / 0.6))
    ]
    assert "forward:dropout" in report.findings[0].message
    assert found(FunctionalDropout(False), (8,)) == set()


def test_a_residual_add_stops_the_walk() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop, self.fc, self.bn = nn.Dropout(0.5), nn.Linear(8, 8), nn.BatchNorm1d(8)

        def forward(self, x: Tensor) -> Tensor:
            return self.bn(self.fc(self.drop(x) + x))

    assert found(Residual(), (8,)) == set()


# --- VS002-VS004 ----------------------------------------------------------------------------------


class SigmoidAfter(nn.Module):
    def __init__(self, drop_first: bool) -> None:
        super().__init__()
        self.fc, self.drop, self.drop_first = nn.Linear(8, 8), nn.Dropout(0.3), drop_first

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc(x)
        return torch.sigmoid(self.drop(x)) if self.drop_first else self.drop(torch.sigmoid(x))


@pytest.mark.parametrize(
    ("model", "fires"),
    [
        (nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.3), nn.Tanh()), True),
        (nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.3), nn.Flatten(), nn.Sigmoid()), True),
        (SigmoidAfter(drop_first=True), True),
        (nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Dropout(0.3)), False),
        (SigmoidAfter(drop_first=False), False),
        (nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.3), nn.ReLU()), False),
        (nn.Sequential(nn.Dropout(0.3), nn.Linear(8, 8), nn.Tanh()), False),
    ],
    ids=["tanh", "via-flatten", "torch.sigmoid", "tanh-first", "sigmoid-first", "relu", "via-linear"],
)
def test_vs002_dropout_right_before_a_saturating_activation(model: nn.Module, fires: bool) -> None:
    report = lint_model(model, (8,))
    assert any(f.rule.name == "VS002" for f in report.findings) is fires
    assert all(f.rule.severity.value == "warning" for f in report.findings if f.rule.name == "VS002")


def _conv(drop: nn.Module, after_pool: bool = False) -> nn.Module:
    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), drop] if after_pool else [drop, nn.AdaptiveAvgPool2d(1)]
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), *head, nn.Flatten(), nn.Linear(4, 2))


@pytest.mark.parametrize(
    ("model", "fires"),
    [
        (_conv(nn.Dropout(0.2)), True),
        (_conv(GaussianDropout(0.2)), True),
        (_conv(Uout(0.2)), True),
        (_conv(nn.Dropout2d(0.2)), False),
        (_conv(nn.Dropout(0.2), after_pool=True), False),  # 1x1 maps: already per channel
        (nn.Sequential(nn.Dropout(0.2), nn.Conv2d(3, 4, 3)), True),  # on the input image
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Dropout(0.2)), False),
    ],
    ids=["dropout", "gaussian", "uout", "dropout2d", "after-global-pool", "input", "flattened"],
)
def test_vs003_element_wise_dropout_on_conv_maps(model: nn.Module, fires: bool) -> None:
    assert any(r == "VS003" for r, _ in found(model)) is fires


def test_vs003_ignores_token_sequences() -> None:
    model = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.1), nn.Linear(16, 16))  # (N, T, D) tokens
    assert found(model, (5, 16)) == set()


def test_vs003_needs_shapes_and_says_so() -> None:
    report = lint_model(_conv(nn.Dropout(0.2)), None)
    assert report.findings == [] and any("VS003 needs activation shapes" in n for n in report.notes)


@pytest.mark.parametrize(
    ("model", "fires"),
    [
        (nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.BatchNorm1d(8)), True),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(4)), True),
        (nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU()), False),
        (nn.Sequential(nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8)), False),
    ],
    ids=["linear-act-bn", "conv-act-pool-bn", "linear-bn-act", "input-bn"],
)
def test_vs004_bn_after_the_activation(model: nn.Module, fires: bool) -> None:
    shape = (3, 8, 8) if isinstance(model[0], nn.Conv2d) else (8,)
    report = lint_model(model, shape)
    assert any(f.rule.name == "VS004" for f in report.findings) is fires
    assert report.exit_code == 0  # a warning never fails CI


# --- the measured pass ----------------------------------------------------------------------------


def _gaussian_data(features: int = 32, n: int = 4000, classes: int = 2) -> TensorData:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    split = n * 3 // 4
    return TensorData("gauss", x[:split], y[:split], x[split:], y[split:], n_classes=classes)


def _fit_bn_stats(model: nn.Module, x: Tensor) -> None:
    """Training's view of BN: train-mode forwards with dropout on, cumulative running stats."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        for chunk in x.split(250):
            model(chunk)


def _drop_bn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64, bias=False), nn.Dropout(0.5), nn.BatchNorm1d(64))


def test_measured_shift_of_linear_dropout_bn_is_near_two() -> None:
    data, model = _gaussian_data(), _drop_bn()
    _fit_bn_stats(model, data.x_train)
    running = model[2].running_var.clone()
    measured = measure_model(model, data)
    assert measured.layers["2"].shift == pytest.approx(2.0, rel=0.05)
    assert [f.expected_ratio for f in lint_model(model, (32,)).findings] == [2.0]
    assert not any("untrained" in n for n in measured.notes)
    assert measured.accuracy is None and any("64" in n and "2 classes" in n for n in measured.notes)
    assert torch.equal(model[2].running_var, running)  # measured on a copy


def test_untrained_bn_statistics_are_estimated_with_dropout_on_first() -> None:
    measured = measure_model(_drop_bn(), _gaussian_data())
    assert measured.layers["2"].shift == pytest.approx(2.0, rel=0.05)
    assert any("untrained" in n for n in measured.notes)


def test_accuracy_before_and_after_recalibration(tiny_data: TensorData) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.5), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        optimizer.zero_grad()
        F.cross_entropy(model(tiny_data.x_train), tiny_data.y_train).backward()
        optimizer.step()
    measured = measure_model(model, tiny_data)
    oracle = copy.deepcopy(model)
    before = accuracy(oracle, tiny_data.x_val, tiny_data.y_val)
    recalibrate_bn(oracle, [tiny_data.x_train])
    assert measured.accuracy == (before, accuracy(oracle, tiny_data.x_val, tiny_data.y_val))
    assert measured.layers["3"].shift > 1.2


def test_a_model_that_does_not_fit_the_data_is_one_line(tiny_data: TensorData) -> None:
    with pytest.raises(LintError, match=r"does not accept tiny inputs of shape \(1, 8, 8\)") as err:
        measure_model(nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)), tiny_data)
    assert "\n" not in str(err.value)


def test_report_record_is_json_with_stable_keys() -> None:
    data, model = _gaussian_data(), _drop_bn()
    report = lint_model(model, (32,))
    measured = measure_model(model, data)
    report.measured, report.accuracy = measured.layers, (0.5, 0.75)
    record = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(record) >= {"findings", "measured", "accuracy", "tracer", "summary"}
    assert record["findings"][0].keys() == {"rule", "severity", "module", "message", "fix", "expected_ratio"}
    assert record["measured"][0].keys() == {"layer", "moving_var", "real_var", "shift"}
    assert record["accuracy"] == {"before": 0.5, "after": 0.75}
    assert record["summary"] == {"errors": 1, "warnings": 0} and record["tracer"] == "fx"


# --- loading --------------------------------------------------------------------------------------

MODELS_PY = """
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.drop, self.bn = nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.drop(self.fc(x)))

def factory():
    return Net()

instance = Net()
number = 3

class NeedsArgs(nn.Module):
    def __init__(self, width):
        super().__init__()

def not_a_model():
    return "model"
"""


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "lint_models_a.py").write_text(MODELS_PY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("ref", ["lint_models_a:Net", "lint_models_a:factory", "lint_models_a.py:instance"])
def test_load_target_takes_a_class_a_factory_or_an_instance(models_dir: Path, ref: str) -> None:
    model = load_target(ref)
    assert type(model).__name__ == "Net"
    assert found(model, (4,)) == {("VS001", "bn")}


@pytest.mark.parametrize(
    ("ref", "named"),
    [
        ("lint_models_a", "expected MODULE:ATTR"),
        ("lint_models_a:missing", "has no attribute 'missing'"),
        ("lint_models_a:number", "is a int, not an nn.Module"),
        ("lint_models_a:NeedsArgs", "without arguments: TypeError"),
        ("lint_models_a:not_a_model", "returned a str"),
        ("no_such_module_xyz:Net", "cannot import 'no_such_module_xyz'"),
        ("nowhere.py:Net", "no such file"),
        ("nowhere.safetensors", "no such file"),
    ],
)
def test_load_target_errors_name_the_value(models_dir: Path, ref: str, named: str) -> None:
    with pytest.raises(LintError, match=named) as err:
        load_target(ref)
    assert "\n" not in str(err.value)


def test_load_weights_state_dict_checkpoint_and_safetensors(models_dir: Path) -> None:
    from safetensors.torch import save_file

    source = load_target("lint_models_a:Net")
    state = source.state_dict()
    torch.save(state, models_dir / "w.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, models_dir / "ckpt.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(models_dir / "w.safetensors"))
    for name in ("w.pt", "ckpt.pt", "w.safetensors"):
        target = load_target("lint_models_a:Net")
        load_weights(target, str(models_dir / name))
        assert all(torch.equal(target.state_dict()[k], v) for k, v in state.items())


def test_load_weights_errors_are_one_line(models_dir: Path) -> None:
    model = load_target("lint_models_a:Net")
    torch.save({"fc.weight": torch.zeros(4, 4)}, models_dir / "partial.pt")
    torch.save(model.state_dict() | {"bn.weight": torch.zeros(7)}, models_dir / "bad.pt")
    (models_dir / "junk.pt").write_bytes(b"not a checkpoint")
    for name, named in [
        ("partial.pt", "missing"),
        ("bad.pt", "size mismatch for bn.weight"),
        ("junk.pt", "not a readable state_dict"),
        ("absent.pt", "not found"),
    ]:
        with pytest.raises(LintError, match=named) as err:
            load_weights(model, str(models_dir / name))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "shape"), [("3,32,32", (3, 32, 32)), ("64", (64,)), ("1x8x8", (1, 8, 8)), (None, None)]
)
def test_parse_input_shape(text: str | None, shape: tuple[int, ...] | None) -> None:
    assert parse_input_shape(text) == shape


@pytest.mark.parametrize("text", ["", "3,,3", "a,b", "3,0", "-1"])
def test_parse_input_shape_rejects(text: str) -> None:
    with pytest.raises(LintError, match="--input-shape"):
        parse_input_shape(text)


@pytest.mark.parametrize(
    ("kind", "ratio"), [("bernoulli", 2.0), ("channel", 2.0), ("gaussian", 2.0), ("uout", 3.25 / 3)]
)
def test_an_exported_candidate_is_linted_by_its_path(tmp_path: Path, kind: str, ratio: float) -> None:
    from spaces.spec import ArchitectureSpec, BlockSpec
    from trainers.model import build_model, save_model

    block = BlockSpec(8, "relu", True, kind, 0.5, ("drop", "bn", "act"))
    spec = ArchitectureSpec("cnn", (1, 8, 8), 10, (block,))
    save_model(build_model(spec), tmp_path / "best.safetensors")
    report = lint_model(load_target(str(tmp_path / "best.safetensors")), (1, 8, 8))
    vs001 = [(f.module, f.expected_ratio) for f in report.findings if f.rule.name == "VS001"]
    assert vs001 == [("blocks.0.bn", pytest.approx(ratio))]
    assert any(f.rule.name == "VS003" for f in report.findings) is (kind != "channel")
