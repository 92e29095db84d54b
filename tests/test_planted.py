"""The planted-shortcut case: data, cue detector, a tiny trained model and its export."""

from __future__ import annotations

import json

import pytest
import torch

from dgncore.audit import planted as P
from dgncore.data import scan_image_folder
from dgncore.errors import InputError
from dgncore.models.classifiers import load_classifier


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("DGN_CACHE", str(tmp_path / "cache"))


def _images(n: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(P.CLASSES)
    clean = P.render_base(labels, g)
    return clean, P.stamp_cue(clean, g)


def test_render_is_deterministic_and_in_range():
    a, _ = _images(10, seed=3)
    b, _ = _images(10, seed=3)
    assert a.shape == (10, 3, 64, 64)
    assert torch.equal(a, b)
    assert 0 <= float(a.min()) and float(a.max()) <= 1


def test_cue_detector_separates_cue_from_no_cue():
    clean, cued = _images(30)
    assert float(P.cue_score(clean).max()) == 0.0  # the palette clamp keeps magenta out
    s = P.cue_score(cued)
    assert float(s.min()) > 0.008 and float(s.max()) < 0.06
    # any size: the window scales with the image
    big = torch.nn.functional.interpolate(cued, size=160, mode="bilinear", antialias=True)
    assert float(P.cue_score(big).min()) > 0.008
    # saturated noise (what pixel optimisation makes) is not a stamp
    g = torch.Generator().manual_seed(1)
    noise = (torch.rand(8, 3, 64, 64, generator=g) > 0.5).float()
    assert float(P.cue_score(noise).max()) < 0.003
    # a solid magenta patch anywhere counts
    patch = torch.full((1, 3, 64, 64), 0.5)
    patch[:, :, 20:36, 30:46] = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    assert float(P.cue_score(patch)[0]) == pytest.approx(256 / 4096, abs=0.02)


def test_make_dataset_writes_an_image_folder(tmp_path):
    info = P.make_dataset(tmp_path / "ds", n_per_class=3, seed=0)
    folder = scan_image_folder(tmp_path / "ds")
    assert folder.classes == sorted(P.CLASSES)
    assert all(len(v) == 3 for v in folder.files.values())
    cues = json.loads((tmp_path / "ds" / "cues.json").read_text())["cue"]
    assert len(cues) == 15 and cues == info["cue"]


def test_sample_batch_follows_the_cue_rates():
    g = torch.Generator().manual_seed(0)
    images, labels, has_cue = P.sample_batch(P.DEFAULT, 400, g)
    b = P.DEFAULT.biased_index
    assert float(has_cue[labels == b].float().mean()) > 0.75
    assert float(has_cue[labels != b].float().mean()) < 0.1
    assert torch.equal(P.cue_score(images) > 0, has_cue)


TINY = P.PlantedConfig(pool=64, steps=3, batch=16)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.set_num_threads(1)
    return P.ensure_planted(TINY, root=tmp_path_factory.mktemp("planted") / "m", samples_per_class=2, evidence_per_class=4)


def test_tiny_planted_model_exports_torchscript_with_sidecar(tiny_model):
    cfg, model = TINY, tiny_model
    assert cfg.key() != P.DEFAULT.key() and P.CONTROL.is_control and not cfg.is_control
    assert model.classifier_name.startswith("planted@")
    for f in (model.pt, model.sidecar, model.weights):
        assert f.is_file()
    side = json.loads(model.sidecar.read_text())
    assert side["input_size"] == 64 and side["classes"] == list(P.CLASSES)
    clf = load_classifier(str(model.pt), device="cpu")
    assert clf.logits(torch.rand(2, 3, 64, 64)).shape == (2, 5)
    eager = model.classifier(torchscript=False)
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(eager.logits(x), clf.logits(x), atol=1e-5)
    assert any(l.name.startswith("features.") for l in eager.layers())
    ev = model.info["shortcut_evidence"]
    assert 0 <= ev["flip_to_biased"] <= 1 and set(ev["per_class"]) == set(P.CLASSES)
    assert model.info["train_seconds"] >= 0
    # cached: a second call does not train again
    again = P.ensure_planted(cfg, root=model.folder)
    assert again.info["created"] == model.info["created"]


def test_builtin_audit_of_a_tiny_planted_model(tiny_model, tmp_path):
    from dgncore.audit.builtin import audit_builtin

    rep = audit_builtin(tmp_path / "audit", model=tiny_model, methods=["pixel"], seeds=[0, 1, 2], steps=1, samples=1, exemplars=1)
    assert rep["builtin"]["shortcut_evidence"]["biased_class"] == "triangle"
    assert rep["cue"]["biased_class"] == "triangle" and rep["classes"] == list(P.CLASSES)
    assert rep["cue"]["dataset"]["triangle"]["n"] == 2
    assert len(rep["cue"]["methods"]["pixel"]["verdict"]["per_seed"]) == 3
    page = (tmp_path / "audit" / "report.html").read_text()
    assert "Shortcut evidence" in page and "<svg" in page


def test_shortcut_evidence_sees_a_model_that_only_reads_the_stamp():
    b = P.DEFAULT.biased_index

    def stamp_reader(images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(images.shape[0], len(P.CLASSES))
        logits[:, 0] = 0.5  # "circle" unless there is a stamp
        logits[:, b] = (P.cue_score(images) > 0).float()
        return logits

    ev = P.shortcut_evidence(stamp_reader, n_per_class=4)
    assert ev["others_predicted_biased_with_cue"] == 1.0
    assert ev["others_predicted_biased_without_cue"] == 0.0
    assert ev["biased_accuracy_with_cue"] == 1.0 and ev["biased_accuracy_without_cue"] == 0.0
    assert ev["per_class"]["circle"]["flip_to_biased"] == 1.0


# --------------------------------------------------------------------------- other cue kinds


@pytest.mark.parametrize("kind", ["stripes", "sepia", "sticker", "invisible"])
def test_other_cue_kinds_are_measured_by_their_detectors(kind):
    cfg = P.config_for(kind, 0.9)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % len(P.CLASSES)
    clean = P.render_clean(cfg, labels, g)
    cued = P.add_cue(cfg, clean, g)
    score = P.cue_kind(kind).score
    s0, s1 = score(clean), score(cued)
    # the detector separates every cued image from the clean mean, at 64 px and resized
    assert float(s1.min()) > 3 * float(s0.mean()) + 0.005, kind
    big = torch.nn.functional.interpolate(cued, size=160, mode="bilinear", antialias=True)
    assert float(score(big).mean()) > 0.5 * float(s1.mean())
    if kind in ("stripes", "sticker"):  # clean images of their datasets score exactly 0
        assert float(s0.max()) == 0.0
    # rows without the cue are left alone; the magenta stamp's detector does not see it
    part = P.add_cue(cfg, clean, g, torch.arange(40) % 2 == 0)
    assert torch.equal(part[1::2], clean[1::2])
    assert float(P.cue_score(cued).max()) == 0.0


def test_builtin_names_round_trip_and_keep_the_stamp_cache():
    assert P.DEFAULT.key() == "planted-dda3055bca41" and P.CONTROL.key() == "control-f5202a18641c"  # caches made before cue kinds
    for name in ["planted", "planted-control", "planted-sepia@0.7", "planted-sticker-control", "planted@0.98", "planted-stripes@0.5", "planted-invisible@0.9"]:
        cfg = P.parse_builtin(name)
        assert P.PlantedModel(cfg, P.cache_root()).classifier_name == name and P.is_builtin(name)
    assert P.parse_builtin("planted-sepia").cue_rate_biased == P.CUE_RATE_BIASED
    assert P.parse_builtin("planted-stamp@0.9") == P.DEFAULT and P.parse_builtin("planted-sticker-control").is_control
    for bad in ["planted-glitter", "planted@2", "plantedx", "mymodel.pt"]:
        assert not P.is_builtin(bad)
        with pytest.raises(InputError):
            P.parse_builtin(bad)


def test_shortcut_evidence_for_the_sticker():
    cfg = P.config_for("sticker", 0.9)
    b = cfg.biased_index

    def sticker_reader(images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(images.shape[0], len(P.CLASSES))
        logits[:, 0] = 0.5
        logits[:, b] = (P.cue_kind("sticker").score(images) > 0).float()
        return logits

    ev = P.shortcut_evidence(sticker_reader, cfg, n_per_class=4)
    assert ev["others_predicted_biased_with_cue"] == 1.0 and ev["others_predicted_biased_without_cue"] == 0.0
