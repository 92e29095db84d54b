"""The natural method: a Fourier image with the colour and amplitude spectrum of real photos."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgncore.__main__ import main as cli
from dgncore.drawing.objectives import parse_target
from dgncore.drawing.optimize import build_source
from dgncore.drawing.registry import make_preset
from dgncore.errors import InputError
from dgncore.prior.photostats import (
    DEFAULT_STATS,
    compute_photo_stats,
    load_photo_stats,
)
from dgncore.runs import generate


def _photos(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = np.array([200, 60, 40], dtype=np.float64)  # reddish photos
        img = np.clip(base + rng.normal(0, 30, (40, 56, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{i:02d}.png")
    return root


def test_photo_stats_measure_colour_and_spectrum(tmp_path: Path) -> None:
    from dgncore.data import image_files

    stats = compute_photo_stats(image_files(_photos(tmp_path / "p")), size=32)
    assert stats.mean[0] > 0.7 and stats.mean[2] < 0.25  # the photos' red
    assert stats.colour.shape == (3, 3) and torch.allclose(stats.colour, stats.colour.T, atol=1e-5)
    assert stats.spectrum.shape == (3, 32, 17) and bool((stats.spectrum >= 0).all())
    assert stats.spectrum_at(64).shape == (3, 64, 33)


def test_photo_stats_command_leaves_the_heldout_tenth_out(tmp_path: Path) -> None:
    folder = _photos(tmp_path / "p", 20)
    out = tmp_path / "stats.safetensors"
    assert cli(["photo-stats", "--images", str(folder), "--out", str(out), "--size", "32"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["photos"] == 18 and meta["heldout"] == ["09.png", "19.png"] and meta["folder"] == "p"
    assert load_photo_stats(out).spectrum.shape == (3, 32, 17)
    assert cli(["photo-stats", "--images", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_bad_photo_stats_files_are_input_errors(tmp_path: Path) -> None:
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"no")
    with pytest.raises(InputError):
        load_photo_stats(bad)
    with pytest.raises(InputError, match="exists"):
        load_photo_stats(tmp_path / "missing.safetensors")


def test_the_natural_image_starts_at_the_photos_colour() -> None:
    """At the start (tiny coefficients) the image is the photos' mean colour, not grey."""
    preset = make_preset("natural", size=32)
    torch.manual_seed(0)
    img = build_source(preset, 2, torch.device("cpu"))().detach()
    assert img.shape == (2, 3, 32, 32)
    want = load_photo_stats(DEFAULT_STATS).mean
    assert torch.allclose(img.mean((0, 2, 3)), want, atol=0.03)
    grey = build_source(make_preset("fourier", size=32), 1, torch.device("cpu"))().detach().mean()
    assert abs(float(grey) - 0.5) < 0.02


def test_a_natural_result_names_its_photo_statistics_by_file_and_hash(tiny_classifier, tmp_path: Path) -> None:
    rec = generate(tiny_classifier, [parse_target("class:hen", tiny_classifier)], make_preset("natural", steps=2, size=32), tmp_path)[0]
    hp = rec["hyperparameters"]
    assert hp["photo_stats"] == "photo_stats.safetensors"
    assert hp["photo_stats_sha256"] == hashlib.sha256(DEFAULT_STATS.read_bytes()).hexdigest()
    assert str(DEFAULT_STATS.parent) not in json.dumps(rec)


def test_lucent_view_pads_moves_and_passes_gradients() -> None:
    from dgncore.drawing.sources import LUCENT_PAD, lucent_view

    x = torch.full((4, 3, 32, 32), 0.8, requires_grad=True)
    torch.manual_seed(1)
    y = lucent_view(x)
    assert y.shape == (4, 3, 32 + 2 * LUCENT_PAD, 32 + 2 * LUCENT_PAD)
    torch.manual_seed(1)
    assert torch.equal(y, lucent_view(x))  # drawn from the seeded generator
    assert not torch.equal(y[0], y[1]) or not torch.equal(y[1], y[2])  # rows drawn apart
    assert float(y.detach()[:, :, 0, 0].max()) <= 0.51 and float(y.detach()[:, :, 28, 28].min()) > 0.7  # grey or black at the corner, the image inside
    y.sum().backward()
    assert float(x.grad.abs().sum()) > 0


def test_the_transform_set_is_a_checked_preset_setting() -> None:
    assert make_preset("natural").transform_set == "lucent" and make_preset("fourier").transform_set == "robust"
    src = build_source(make_preset("natural", size=32), 1, torch.device("cpu")).train()
    assert src.classifier_view(src()).shape[-1] == 32 + 24
    with pytest.raises(InputError, match="transform_set"):
        make_preset("natural", transform_set="wobble")
