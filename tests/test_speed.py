"""The speed paths give the same answers as the plain ones."""

import pytest
import torch
from torch import nn

from dgncore.models.classifiers import Classifier, fold_batchnorm


class ConvBNNet(nn.Module):
    def __init__(self, swapped: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)
        self.swapped = swapped
        for bn in (self.bn1, self.block[1]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(-2, 2)
            bn.bias.data.uniform_(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        # swapped: a ReLU between conv1 and bn1 that the module order does not show
        x = self.bn1(torch.relu(x) if self.swapped else x)
        return self.fc(self.pool(self.block(x)).flatten(1))


def _clf(net: nn.Module) -> Classifier:
    return Classifier("convbn", net, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), [f"c{i}" for i in range(10)])


def test_folded_classifier_matches_the_model_and_hooks_see_the_original():
    torch.manual_seed(0)
    clf = _clf(ConvBNNet())
    fast = clf.fast_model
    assert fast is not None and not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    x = torch.rand(3, 3, 32, 32)
    with torch.inference_mode():
        got = clf.logits(x)
        want = clf.model((x - 0.5) / 0.5)
        _, acts = clf.logits_and_activations(x, ["bn1"])
        bn_out = clf.model.bn1(clf.model.conv1((x - 0.5) / 0.5))
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(acts["bn1"], bn_out, atol=1e-6)  # hooks run on the unfolded model
    clf.fast = False
    with torch.inference_mode():
        assert torch.allclose(clf.logits(x), want, atol=1e-6)


def test_input_gradient_through_the_folded_model():
    torch.manual_seed(1)
    clf = _clf(ConvBNNet())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    clf.logits(x)[:, 3].sum().backward()
    g_fast = x.grad.clone()
    x.grad = None
    clf.fast = False
    clf.logits(x)[:, 3].sum().backward()
    assert torch.allclose(g_fast, x.grad, atol=1e-5)


def test_fold_refuses_a_model_whose_module_order_is_not_its_data_flow():
    torch.manual_seed(2)
    net = ConvBNNet(swapped=True).eval()
    assert fold_batchnorm(net, 32, torch.device("cpu")) is None
    clf = _clf(ConvBNNet(swapped=True))
    with torch.inference_mode():
        x = torch.rand(1, 3, 32, 32)
        assert torch.allclose(clf.logits(x), clf.model((x - 0.5) / 0.5))


@pytest.mark.slow
def test_bf16_autocast_run_gives_fp32_8bit_images(tiny_classifier):
    from dgncore.drawing.objectives import parse_target
    from dgncore.drawing.optimize import optimize
    from dgncore.drawing.registry import make_preset

    t = parse_target("class:hen", tiny_classifier)
    for method, kw in (("pixel", {}), ("untrained", {"width": 0.0625})):
        preset = make_preset(method, steps=12, size=32, early_stop=None, **kw)
        run = optimize(tiny_classifier, [t], preset, seed=0, check_every=4, bf16=True)
        assert run.images.dtype == torch.float32 and torch.equal(run.images, (run.images * 255).round() / 255)
        assert run.activation[-1][0] > run.activation[0][0]


def test_fourier_baseline_uses_lucents_scale(tiny_classifier):
    from dgncore.drawing.objectives import parse_target
    from dgncore.drawing.optimize import optimize
    from dgncore.drawing.registry import make_preset
    from dgncore.drawing.sources import FourierSource

    preset = make_preset("fourier", steps=20, size=32, early_stop=None)
    src = FourierSource(preset, 2)
    assert float(src.scale.max()) == 32.0  # 1 / max(f, 1/size), as Lucid/Lucent's fft_image
    with torch.no_grad():
        img = src()
    assert img.shape == (2, 3, 32, 32) and 0 < float(img.min()) and float(img.max()) < 1
    run = optimize(tiny_classifier, [parse_target("class:hen", tiny_classifier)], preset, seed=0)
    assert run.activation[-1][0] > run.activation[0][0]


def test_transforms_are_a_preset_setting_of_any_method():
    """Lucid's jitter / scale / rotation is a preset switch (on for the Fourier baseline):
    the classifier sees a transformed copy while training, never the saved image."""
    import pytest

    from dgncore.drawing.optimize import build_source
    from dgncore.drawing.registry import make_preset
    from dgncore.errors import InputError

    assert make_preset("fourier").transforms and not make_preset("pixel").transforms
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    for on in (False, True):
        src = build_source(make_preset("pixel", size=32, transforms=on), 2, torch.device("cpu"))
        src.train()
        seen = src.classifier_view(x)
        assert seen.shape == x.shape and torch.equal(seen, x) != on
        src.eval()
        assert torch.equal(src.classifier_view(x), x)
    with pytest.raises(InputError, match="transforms"):
        make_preset("pixel", transforms="yes")


def test_bf16_follows_the_preset_the_hardware_and_the_environment(monkeypatch, tiny_classifier):
    """bf16 autocast is a per-preset choice (on for pretrained, measured), used only on
    devices with native bf16 units; DGN_BF16=0/1 forces it; the run records what ran."""
    import importlib

    from dgncore.drawing.objectives import parse_target
    from dgncore.drawing.registry import make_preset

    opt_mod = importlib.import_module("dgncore.drawing.optimize")
    cpu = torch.device("cpu")
    assert make_preset("pretrained").bf16 and not make_preset("untrained").bf16
    monkeypatch.delenv("DGN_BF16", raising=False)
    for native in (False, True):
        monkeypatch.setattr(opt_mod, "native_bf16", lambda _d, native=native: native)
        assert opt_mod.use_bf16(make_preset("pretrained"), cpu) is native
        assert opt_mod.use_bf16(make_preset("untrained"), cpu) is False
    monkeypatch.setenv("DGN_BF16", "0")
    assert opt_mod.use_bf16(make_preset("pretrained"), cpu) is False
    monkeypatch.setenv("DGN_BF16", "1")
    assert opt_mod.use_bf16(make_preset("untrained"), cpu) is True
    run = opt_mod.optimize(tiny_classifier, [parse_target("class:hen", tiny_classifier)], make_preset("pixel", steps=2, size=32), seed=0)
    assert run.bf16 is True


def test_the_folded_copy_is_built_in_fp32_even_inside_bf16_autocast():
    """A pretrained run (bf16 autocast) may be the first to ask for the folded copy; built
    under autocast its fp32 check failed and the process lost the fast path for good."""
    clf = _clf(ConvBNNet())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = clf.fast_model
    assert fast is not None
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(fast(clf.preprocess(x)), clf.model(clf.preprocess(x)), atol=1e-4)


GPU_SCRIPTS = {
    "gpu.sh": ("bench/speed.py", "dgncore gallery", "dgncore pretrain"),
    "gpu_decoder.sh": ("dgncore pretrain", "bench/decoder_fit.py"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GPU_SCRIPTS))
def test_the_gpu_scripts_are_valid_bash_and_pass_only_flags_their_tools_have(name):
    """bench/gpu*.sh run on a lent GPU, where a wrong flag would waste the session's device
    time: check each script's syntax and each command's flags (its own and those of the
    bash arrays it expands) against that command's --help."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = root / "bench" / name
    subprocess.run(["bash", "-n", str(script)], check=True)
    lines = [ln for ln in script.read_text().replace("\\\n", " ").splitlines() if not ln.lstrip().startswith("#")]
    arrays = {m.group(1): m.group(2) for ln in lines if (m := re.match(r"\s*(\w+)=\((.*)\)\s*$", ln))}
    seen = set()
    for key in GPU_SCRIPTS[name]:
        module = ["-m", *key.split()] if key.startswith("dgncore") else [key]
        helptext = subprocess.run([sys.executable, *module, "--help"], cwd=root, capture_output=True, text=True, check=True).stdout
        for line in (ln for ln in lines if key in ln):
            seen.add(key)
            used = line + " ".join(body for arr, body in arrays.items() if f"${{{arr}[@]}}" in line)
            for flag in re.findall(r"\s(--[a-z][a-z-]*)", " " + used):
                assert flag in helptext, f"{key} has no {flag}"
    assert seen == set(GPU_SCRIPTS[name])


def test_torch_work_in_a_passing_thread_returns_its_value_and_raises_its_error():
    import threading

    from dgncore.errors import InputError
    from dgncore.models.hardware import in_passing_thread

    seen = []

    def work(x, scale=1):
        seen.append(threading.current_thread())
        return torch.ones(2).mul(x * scale).sum().item()

    assert in_passing_thread(work, 3, scale=2) == 12.0
    assert seen[0] is not threading.current_thread() and not seen[0].is_alive()  # its OpenMP team went with it

    def bad():
        raise InputError("no such model")

    with pytest.raises(InputError, match="no such model"):
        in_passing_thread(bad)


def test_the_dashboard_loads_its_classifier_off_its_own_thread(monkeypatch):
    """Streamlit's script thread lives on: torch work there slowed the jobs 1.7x."""
    import threading

    from dashboard import runner
    from dgncore.models import classifiers

    where = []
    monkeypatch.setattr(classifiers, "load_classifier", lambda *a, **k: where.append(threading.current_thread()) or "clf")
    assert runner.load("efficientnet_lite0") == "clf"
    assert where[0] is not threading.current_thread()


def test_the_bench_step_counts_every_view(tiny_classifier):
    """bench/speed.py's bare step and FLOP count see what the loop's classifier sees:
    ``views`` transformed copies of every row (the source itself runs once)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import speed

    from dgncore.drawing.registry import make_preset

    one = make_preset("fourier", size=32)
    total1, gen1 = speed.count_flops(tiny_classifier, one, 1, torch.device("cpu"))
    total2, gen2 = speed.count_flops(tiny_classifier, one.replace(views=2), 1, torch.device("cpu"))
    assert gen2 == gen1 and total2 - gen2 == pytest.approx(2 * (total1 - gen1))
    sizes: list[int] = []
    tiny_classifier.fast_model  # built (with a probe pass) before counting  # noqa: B018
    preprocess = tiny_classifier.preprocess
    tiny_classifier.preprocess = lambda x: (sizes.append(x.shape[0]), preprocess(x))[1]
    try:
        speed.bare_step_fn(tiny_classifier, one.replace(views=3), 2, torch.device("cpu"))()
    finally:
        tiny_classifier.preprocess = preprocess
    assert sizes == [6]
