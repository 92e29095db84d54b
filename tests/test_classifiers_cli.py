import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_CLASSES, TinyNet
from safetensors.torch import save_file

from dgncore.__main__ import main
from dgncore.errors import InputError
from dgncore.models.classifiers import load_classifier, read_state_dict


@pytest.fixture
def torchscript_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():
        net.fc.weight.mul_(30)
    path = tmp_path / "tiny.pt"
    torch.jit.script(net).save(str(path))
    (tmp_path / "tiny.json").write_text(json.dumps({"input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "classes": TINY_CLASSES}))
    return path


def test_torchscript_with_sidecar_generates(torchscript_model, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["generate", "--model", str(torchscript_model), "--target", "class:hen", "--target", "class:0",
               "--method", "pixel", "--size", "32", "--steps", "3", "--out", str(out)])
    assert rc == 0
    rec = json.loads((out / "8_hen.json").read_text())
    assert rec["target"] == "class:8" and rec["method"] == "pixel" and rec["steps"] == 3
    assert (out / "0_tench.png").is_file()
    # --format webp (the shipped atlas is made so): scored on the WebP as saved
    assert main(["generate", "--model", str(torchscript_model), "--target", "class:hen", "--method", "pixel", "--size", "32", "--steps", "3",
                 "--format", "webp", "--out", str(tmp_path / "webp")]) == 0
    rec = json.loads((tmp_path / "webp" / "8_hen.json").read_text())
    assert rec["png"] == "8_hen.webp" and "WEBP" in rec["scored_on"] and (tmp_path / "webp" / "8_hen.webp").is_file()


def test_gallery_cli_reports_time_rate_and_reached(torchscript_model, tmp_path, capsys):
    argv = ["gallery", "--model", str(torchscript_model), "--classes", "hen,tench,goldfish", "--method", "pixel",
            "--size", "32", "--steps", "2", "--batch", "2", "--out", str(tmp_path / "g")]
    assert main(argv) == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(r"made 3 images in [\d.]+ s \([\d.]+ images/s, cpu, batch 2\); "
                        r"p_target >= 0\.9 on the saved image: \d/3; already on disk: 0", summary), summary
    assert main(argv) == 0  # resumed: nothing left to make
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("made 0 images in ")


@pytest.mark.parametrize("argv, fragment", [
    (["--target", "class:zebra"], "unknown class"),
    (["--target", "class:hen", "--steps", "0"], "steps must be"),
    (["--target", "class:hen", "--method", "magic"], "unknown method"),
    (["--target", "filter:conv9:1"], "layers"),  # TorchScript: no layer targets
])
def test_cli_user_errors_are_one_line_exit_2(torchscript_model, tmp_path, capsys, argv, fragment):
    out = tmp_path / "out"
    rc = main(["generate", "--model", str(torchscript_model), "--size", "32", "--out", str(out), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "\n" not in err and fragment in err
    assert not out.exists()  # nothing half-written


def test_missing_sidecar_and_bad_model(tmp_path, capsys):
    (tmp_path / "lonely.pt").write_bytes(b"not a model")
    assert main(["layers", "--model", str(tmp_path / "lonely.pt")]) == 2
    assert "sidecar" in capsys.readouterr().err
    assert main(["layers", "--model", "resnet_9000"]) == 2


@pytest.mark.slow
def test_vgg16_without_weights_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    assert main(["layers", "--model", "vgg16"]) == 2
    err = capsys.readouterr().err
    assert "--weights" in err and "vgg16" in err


def test_torchvision_model_from_local_safetensors(tmp_path):
    import torchvision

    model = torchvision.models.get_model("resnet18", weights=None, num_classes=1000)
    path = tmp_path / "r18.safetensors"
    save_file(model.state_dict(), str(path))
    clf = load_classifier("resnet18", weights=path, device="cpu")
    assert clf.n_classes == 1000 and clf.classes[0] == "tench"
    assert any(l.name == "layer4" for l in clf.layers())


def test_pickle_weights_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, path)
    with pytest.raises(InputError, match="refused"):
        read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_default_model_end_to_end(tmp_path):
    """The real default path from a shell: EfficientNet-Lite0, untrained G, a few steps."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "dgncore", "generate", "--model", "efficientnet_lite0", "--target", "class:tench",
         "--method", "untrained", "--steps", "4", "--seed", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads((out / "0_tench.json").read_text())
    assert rec["model"] == "efficientnet_lite0" and rec["target"] == "class:0" and rec["steps"] == 4
    assert 1 <= rec["rank"] <= 1000 and len(rec["top5"]) == 5
    layers = subprocess.run([sys.executable, "-m", "dgncore", "layers"], capture_output=True, text=True, timeout=120)
    assert "blocks.6.0" in layers.stdout
