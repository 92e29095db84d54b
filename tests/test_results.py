"""What a saved result says: the second opinion of a held-out network (computed on the
saved file, only where it makes sense), compact WebP galleries scored on the WebP, and
the plain names of the methods."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TinyNet

from dgncore.__main__ import main
from dgncore.data import load_image
from dgncore.drawing.objectives import parse_target
from dgncore.drawing.registry import make_preset
from dgncore.models.classifiers import Classifier, _imagenet_names, load_classifier
from dgncore.results import score_image, second_opinion_model
from dgncore.runs import draw_classes, generate


def imagenet_tiny(name: str = "tiny-imagenet") -> Classifier:
    """A tiny random net answering with the 1,000 ImageNet classes (fast to optimise for)."""
    torch.manual_seed(0)
    classes, descriptions = _imagenet_names()
    return Classifier(name, TinyNet(1000), 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), list(classes), list(descriptions))


def pixel(steps: int = 3):
    return make_preset("pixel", steps=steps, size=32)


def test_an_imagenet_result_gets_lite2s_opinion_of_the_saved_png(tmp_path):
    clf = imagenet_tiny()
    target = parse_target("class:koala", clf)
    rec = generate(clf, [target], pixel(), tmp_path)[0]
    op = rec["second_opinion"]
    assert set(op) == {"model", "p_target", "rank", "nearest", "photo_rank"} and op["model"] == "efficientnet_lite2"
    judge = load_classifier("efficientnet_lite2", device="cpu")
    saved = load_image(tmp_path / rec["png"])
    again = score_image(judge, saved, parse_target("class:koala", judge))
    assert op["p_target"] == pytest.approx(again["p_target"], abs=1e-5) and op["rank"] == again["rank"]
    # the nearest real photos are those of the shipped bank, in Lite2's features of the saved file
    from dgncore import evaluation

    bank = evaluation.shipped_bank()
    emb = evaluation.embed(saved[None], judge)
    assert op["nearest"] == [judge.classes[c] for c in bank.nearest_classes(emb, 3)[0]] and len(op["nearest"]) == 3
    assert op["photo_rank"] == bank.ranks(emb, [105])[0]
    assert json.loads((tmp_path / "105_koala.json").read_text())["second_opinion"] == op


def test_lite2_gets_lite0s_opinion_and_other_models_none(tiny_classifier, tmp_path):
    assert second_opinion_model(imagenet_tiny("efficientnet_lite2")) == "efficientnet_lite0"
    assert second_opinion_model(imagenet_tiny("vgg16")) == "efficientnet_lite2"
    assert second_opinion_model(tiny_classifier) is None  # another class list: nobody to ask
    targets = [parse_target("class:hen", tiny_classifier)]
    assert "second_opinion" not in generate(tiny_classifier, targets, pixel(), tmp_path)[0]
    clf = imagenet_tiny()
    rec = generate(clf, [parse_target("filter:features.0:1", clf)], pixel(), tmp_path / "f")[0]
    assert "second_opinion" not in rec  # a filter has no class to agree on


def test_a_webp_gallery_is_scored_on_the_webp_and_reused(tiny_classifier, tmp_path):
    targets = [parse_target(t, tiny_classifier) for t in ("class:hen", "class:ostrich")]
    made = draw_classes(tiny_classifier, targets, pixel(), tmp_path, image_format="webp")
    assert [r["png"] for r in made] == ["8_hen.webp", "9_ostrich.webp"]
    for rec, t in zip(made, targets):
        assert rec["p_target"] == score_image(tiny_classifier, load_image(tmp_path / rec["png"]), t)["p_target"]
        assert "WEBP" in rec["scored_on"]
    assert not list(tmp_path.glob("*.png"))
    assert draw_classes(tiny_classifier, targets, pixel(), tmp_path, image_format="webp") == []  # all on disk already
    index = json.loads((tmp_path / "index.json").read_text())
    assert {r["png"] for r in index["results"]} == {"8_hen.webp", "9_ostrich.webp"}


def test_the_gallery_command_makes_a_compact_gallery(tmp_path, capsys):
    from tiny_torchscript import save_tiny_torchscript

    model = save_tiny_torchscript(tmp_path)
    out = tmp_path / "examples"
    assert main(["gallery", "--model", str(model), "--classes", "hen,tench", "--method", "pixel", "--steps", "2", "--size", "32",
                 "--format", "webp", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["0_tench.json", "0_tench.webp", "8_hen.json", "8_hen.webp", "index.json"]
    assert main(["gallery", "--model", str(model), "--classes", "hen", "--format", "gif", "--out", str(out)]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_method_has_a_plain_name_and_an_unknown_one_is_its_id():
    from dgncore.drawing.registry import METHODS, REGISTRY, method_blurb, method_label

    for m in METHODS:
        assert REGISTRY[m].label and REGISTRY[m].blurb and method_label(m) == REGISTRY[m].label, m
    assert method_label("pixel") == "Raw pixels: the noise baseline"
    assert method_label("something-new") == "something-new" and method_blurb("something-new") == ""
