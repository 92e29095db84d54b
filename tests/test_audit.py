"""Bias audit and dataset exemplars on tiny models (a TorchScript model made here, as a
user would bring one), a few optimisation steps each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dgncore.__main__ import main
from dgncore.audit import builtin, datasets, methods, run
from dgncore.audit import exemplars as E
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier, load_classifier
from dgncore.paths import DEFAULT_DECODER

CLASSES = ["cat", "dog", "tiger shark"]


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(autouse=True)
def _setup(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("DGN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def ts_model(tmp_path) -> Path:
    """A TorchScript file + JSON sidecar, as a user would bring."""
    torch.manual_seed(0)
    path = tmp_path / "user_model.pt"
    torch.jit.save(torch.jit.script(Small()), str(path))
    path.with_suffix(".json").write_text(json.dumps({"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "classes": CLASSES}))
    return path


def _write_images(folder: Path, n: int, seed: int, size: int = 32) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size + 4 * i, 3), dtype=np.uint8)).save(folder / f"img{i}.png")


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "data"
    for j, name in enumerate(["cat", "dog", "tiger_shark"]):  # '_' matches a space
        _write_images(root / name, 3, seed=j)
    return root


# --------------------------------------------------------------------------- the report


@pytest.mark.slow
def test_audit_writes_report_for_a_torchscript_model(ts_model, dataset, tmp_path):
    clf = load_classifier(str(ts_model), device="cpu")
    out = tmp_path / "report"
    stages = []
    rep = run.run_audit(clf, out, dataset=dataset, methods=["pixel", "untrained"], seeds=[0, 1], steps=2, samples=2, exemplars=2,
                      progress=lambda s, d, t, **_: stages.append(s))
    assert (out / "report.json").is_file() and (out / "report.html").is_file()
    assert json.loads((out / "report.json").read_text())["classes"] == CLASSES
    assert rep["methods"] == ["pixel", "untrained"] and rep["seeds"] == [0, 1]
    pngs = sorted((out / "generated").rglob("*.png"))
    assert len(pngs) == 3 * 2 * 2
    for c in CLASSES:
        rows = rep["generated"]["pixel"][c]
        assert len(rows) == 2 and all((out / r["png"]).is_file() and 0 <= r["p_target"] <= 1 for r in rows)
        d = rep["dataset_classes"][c]
        assert d["n_images"] == 3 and len(d["samples"]) == 2 and 0 <= d["accuracy"] <= 1
        assert all((out / s["thumb"]).is_file() for s in d["samples"])
        ex = d["exemplars"]
        assert len(ex["top"]) == len(ex["bottom"]) == 2 and all(e["label"] != d["folder"] for e in ex["top_other_classes"])
        assert not {e["file"] for e in ex["top"]} & {e["file"] for e in ex["bottom"]}
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 12
    assert "src=\"http" not in page and "<script" not in page
    assert "tiger shark" in page and "indexing the dataset" in stages
    # the same request again is served from disk
    again = run.run_audit(clf, out, dataset=dataset, methods=["pixel"], seeds=[0], steps=2, samples=1, exemplars=1)
    assert all(r["cached"] for rows in again["generated"]["pixel"].values() for r in rows)


def test_audit_with_a_cue_detector_judges_the_biased_class(ts_model, tmp_path):
    from dgncore.audit.planted import cue_score

    clf = load_classifier(str(ts_model), device="cpu")
    rep = run.run_audit(clf, tmp_path / "r", classes="cat,dog", methods=["pixel"], seeds=[0, 1, 2], steps=2, cue=cue_score, biased_class="dog")
    cue = rep["cue"]
    assert cue["biased_class"] == "dog" and set(cue["methods"]["pixel"]["per_seed"]) == {"cat", "dog"}
    v = cue["methods"]["pixel"]["verdict"]
    assert v["seeds"] == 3 and len(v["per_seed"]) == 3 and isinstance(v["pass"], bool)
    rows = run.cue_rows(rep)
    assert len(rows) == 2 * 3 and {r["source"] for r in rows} == {"pixel"}


def test_judge_cue_criterion():
    per_seed = {"a": [0.02, 0.02, 0.001], "b": [0.001, 0.009, 0.0], "c": [0.0, 0.0, 0.0]}
    v = run.cue_verdict(per_seed, "a", [0, 1, 2])
    assert [r["pass"] for r in v["per_seed"]] == [True, True, False]  # seed 2: below the margin
    assert not v["pass"] and v["passes"] == 2
    v = run.cue_verdict({"a": [0.02], "b": [0.011]}, "a", [0])
    assert not v["pass"]  # less than twice the next class


def test_pretrained_without_decoder_is_skipped_not_fatal(ts_model, tmp_path):
    clf = load_classifier(str(ts_model), device="cpu")
    preset, why = methods.method_preset("pretrained", clf)
    if preset is None:
        assert "decoder" in why or "pretrain" in why
    with pytest.raises(InputError, match="does not exist"):
        methods.method_preset("pretrained", clf, checkpoint=tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match="unknown audit method"):
        methods.method_preset("vae", clf)
    untrained, _ = methods.method_preset("untrained", clf)
    assert untrained.generator.out_size == 32 and untrained.generator.stages == 3


@pytest.mark.skipif(not DEFAULT_DECODER.is_file(), reason="no shipped decoder")
def test_the_audit_keeps_its_early_stop_for_pretrained(ts_model):
    """The audit looks at the first image the classifier is sure of, whatever the preset
    does for pictures' sake (pretrained runs all its steps); 0 still turns it off."""
    clf = load_classifier(str(ts_model), device="cpu")
    preset, _ = methods.method_preset("pretrained", clf)
    assert preset.early_stop == methods.AUDIT_EARLY_STOP == 0.99
    from dgncore.drawing.methods.paper import AUDIT_RESTARTS

    assert preset.restarts == AUDIT_RESTARTS > 1 and preset.prune_after == 0  # every start runs: which one gets stuck shows late (bench/prior_reach.py)
    assert methods.method_preset("pretrained", clf, early_stop=0)[0].early_stop is None
    assert methods.method_preset("pretrained", clf, early_stop=0.5)[0].early_stop == 0.5


def test_many_classes_need_a_class_list():
    big = Classifier("big", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 30)), 16, (0.5,) * 3, (0.5,) * 3, [f"c{i}" for i in range(30)])
    with pytest.raises(InputError, match="--classes"):
        run._audit_targets(big, None, None)
    assert len(run._audit_targets(big, "c1,c2", None)) == 2


# --------------------------------------------------------------------------- bad datasets


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_datasets_are_input_errors(ts_model, tmp_path):
    clf = load_classifier(str(ts_model), device="cpu")
    with pytest.raises(InputError) as e:
        datasets.check_dataset(tmp_path / "nope", clf)
    assert "does not exist" in _one_line(e)

    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InputError) as e:
        datasets.check_dataset(tmp_path / "file.png", clf)
    assert "not a folder" in _one_line(e)

    flat = tmp_path / "flat"
    _write_images(flat, 2, 0)
    with pytest.raises(InputError) as e:
        datasets.check_dataset(flat, clf)
    assert "no class sub-folders" in _one_line(e)

    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    with pytest.raises(InputError) as e:
        datasets.check_dataset(empty, clf)
    assert "'cat'" in _one_line(e) and "empty" in str(e.value)

    notes = tmp_path / "notes"
    (notes / "dog").mkdir(parents=True)
    (notes / "dog" / "readme.txt").write_text("hello")
    with pytest.raises(InputError) as e:
        datasets.check_dataset(notes, clf)
    assert "'dog'" in _one_line(e) and "holds no images" in str(e.value)

    wrong = tmp_path / "wrong"
    _write_images(wrong / "cat", 1, 0)
    _write_images(wrong / "zebra", 1, 1)
    with pytest.raises(InputError) as e:
        datasets.check_dataset(wrong, clf)
    assert "'zebra'" in _one_line(e) and "match no class" in str(e.value)

    twice = tmp_path / "twice"
    _write_images(twice / "cat", 1, 0)
    _write_images(twice / "Cat", 1, 1)
    with pytest.raises(InputError) as e:
        datasets.check_dataset(twice, clf)
    assert "both mean class" in _one_line(e)

    corrupt = tmp_path / "corrupt"
    _write_images(corrupt / "cat", 1, 0)
    (corrupt / "cat" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError) as e:
        run.run_audit(clf, tmp_path / "out", dataset=corrupt, methods=["pixel"], seeds=[0], steps=1)
    assert "broken.png" in _one_line(e)


@pytest.mark.slow
def test_folder_names_by_index_and_wordnet_id(tmp_path):
    names = [f"class {i}" for i in range(1000)]
    clf = Classifier("inet", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000)), 16, (0.5,) * 3, (0.5,) * 3, names)
    root = tmp_path / "inet"
    _write_images(root / "n01440764", 1, 0)
    _write_images(root / "7", 1, 0)
    m = datasets.check_dataset(root, clf)
    assert m.class_of == {"7": 7, "n01440764": 0}


# --------------------------------------------------------------------------- CLI


def test_cli_exit_codes(ts_model, dataset, tmp_path, capsys):
    bad = tmp_path / "bad"
    _write_images(bad / "unicorn", 1, 0)
    code = main(["audit", "--model", str(ts_model), "--dataset", str(bad), "--out", str(tmp_path / "o1"), "--methods", "pixel", "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error:") and "unicorn" in err[-1]
    assert main(["audit", "--model", str(ts_model), "--out", str(tmp_path / "o2"), "--seeds", "0,x"]) == 2
    assert main(["audit", "--model", str(ts_model), "--out", str(tmp_path / "o3"), "--methods", "magic"]) == 2
    assert main(["audit", "--out", str(tmp_path / "o4")]) == 2
    code = main(["audit", "--model", str(ts_model), "--dataset", str(dataset), "--out", str(tmp_path / "ok"),
                 "--methods", "pixel", "--seeds", "0", "--steps", "2", "--samples", "1", "--exemplars", "1"])
    assert code == 0 and (tmp_path / "ok" / "report.html").is_file()
    assert capsys.readouterr().out.strip().endswith("report.html")


# --------------------------------------------------------------------------- exemplars


def test_exemplar_index_ranks_and_caches(ts_model, dataset, tmp_path, monkeypatch):
    clf = load_classifier(str(ts_model), device="cpu")
    _write_images(dataset, 1, 9)  # a loose image at the top level: label ""
    index = E.build_index(clf, dataset)
    assert len(index) == 10 and index.logits.shape == (10, 3) and "" in index.labels
    assert index.cache_file is not None and index.cache_file.is_file()
    top = index.top_k("class:dog", 3)
    vals = [e.value for e in top]
    assert vals == sorted(vals, reverse=True) and vals[0] == pytest.approx(float(index.logits[:, 1].max()))
    bottom = index.bottom_k("class:dog", 2)
    assert bottom[0].value == pytest.approx(float(index.logits[:, 1].min()))
    top8 = index.top_k("class:dog", 8)  # 10 images: a bottom row of 8 would repeat 6 of them
    rest = index.bottom_k("class:dog", 8, skip=[e.index for e in top8])
    assert len(rest) == 2 and not {e.index for e in rest} & {e.index for e in top8}
    hi, lo = index.extremes("class:dog", 8)  # split in half instead
    assert [e.index for e in hi] == [e.index for e in top8[:5]] and len(lo) == 5 and not {e.index for e in hi} & {e.index for e in lo}
    hi, lo = index.extremes("class:dog", 3)  # a large enough folder: k each
    assert len(hi) == len(lo) == 3 and lo[0].value == pytest.approx(float(index.logits[:, 1].min()))
    assert all(e.label == "cat" for e in index.top_k("class:dog", 5, label="cat"))
    assert all(e.label != "dog" for e in index.top_k("class:dog", 10, exclude_label="dog"))
    assert top[0].path.is_file() and top[0].predicted in CLASSES
    with pytest.raises(InputError, match="layers"):
        E.build_index(clf, dataset, layers=["conv"])  # TorchScript: class exemplars only

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(E, "_compute", boom)
    again = E.build_index(clf, dataset)  # served from the cache file
    assert np.allclose(again.logits, index.logits) and again.paths == index.paths
    _write_images(dataset / "cat", 4, 5)  # a new file changes the folder's hash
    with pytest.raises(AssertionError, match="recomputed"):
        E.build_index(clf, dataset)


def test_exemplar_index_layers_for_an_eager_model(tiny_classifier, dataset):
    index = E.build_index(tiny_classifier, dataset, layers=["features.0"])
    assert index.layers["features.0"].shape == (9, 8)
    top = index.top_k("filter:features.0:3", 2)
    assert top[0].value == pytest.approx(float(index.layers["features.0"][:, 3].max()))
    index2 = E.build_index(tiny_classifier, dataset, layers=["features.0", "features.2"])  # adds a layer to the cached file
    assert set(index2.layers) == {"features.0", "features.2"}
    with pytest.raises(InputError, match="neuron"):
        index2.values("neuron:features.0:1:0:0")
    with pytest.raises(InputError):
        E.build_index(tiny_classifier, dataset, layers=["nope"])
    with pytest.raises(InputError, match="not a folder"):
        E.build_index(tiny_classifier, dataset / "cat" / "img0.png")
    (dataset / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        E.build_index(tiny_classifier, dataset / "empty")


def test_generation_after_an_exemplar_index_on_a_batchnorm_model(dataset, tmp_path):
    """The BN-folded copy is built lazily; built first inside the index's inference_mode,
    its weights used to be inference tensors and generating then failed (the audit of an
    EfficientNet with a dataset indexes first, then generates)."""
    from dgncore.drawing.objectives import parse_target
    from dgncore.drawing.registry import make_preset
    from dgncore.runs import generate

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    clf = Classifier("bn", net.eval(), 32, (0.5,) * 3, (0.5,) * 3, CLASSES)
    E.build_index(clf, dataset)
    assert clf.fast_model is not None
    recs = generate(clf, [parse_target("class:cat", clf)], make_preset("pixel", steps=2, size=32), tmp_path / "out", reuse=False)
    assert recs[0]["steps"] == 2


def test_pretrained_method_with_a_decoder_file(ts_model, tmp_path):
    """A decoder rendering at another size than the preset's default works (the audit
    takes the generator config from the decoder file's header)."""
    from dgncore.models.generators import N_FEATURES, Generator, GeneratorConfig
    from dgncore.prior.decoder import save_decoder

    cfg = GeneratorConfig(width=0.05, stages=2, out_size=40, running_stats=True)
    path = tmp_path / "tiny_decoder.safetensors"
    save_decoder(Generator(cfg).eval(), torch.rand(N_FEATURES), path, {"generator": cfg.to_dict()})
    clf = load_classifier(str(ts_model), device="cpu")
    rep = run.run_audit(clf, tmp_path / "r", classes="cat", methods=["pretrained"], seeds=[0], steps=2, checkpoint=path)
    row = rep["generated"]["pretrained"]["cat"][0]
    assert rep["methods"] == ["pretrained"] and not rep["skipped_methods"]
    assert Image.open(tmp_path / "r" / row["png"]).size == (40, 40)
    from dgncore.audit.planted import cue_score

    patch = torch.full((2, 3, 40, 40), 0.5)
    patch[:, :, 5:20, 5:20] = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    dx = builtin.cue_expressibility(path, patch, cue_score, steps=2)
    assert len(dx["cue_of_reconstructions"]) == 2 and dx["cue_of_targets"][0] > 0.1


def test_the_default_method_draws_in_an_audit_too(ts_model, tmp_path):
    """natural, the app's default method, is an audit method like the paper's (at the
    model's own input size); an unknown one is one line naming the choices."""
    clf = load_classifier(str(ts_model), device="cpu")
    rep = run.run_audit(clf, tmp_path / "r", classes="cat", methods=methods.parse_methods("natural,pixel"), seeds=[0], steps=2, samples=1, exemplars=1)
    assert rep["methods"] == ["natural", "pixel"] and len(rep["generated"]["natural"]["cat"]) == 1
    with pytest.raises(InputError, match="choose from natural, pretrained"):
        methods.parse_methods("natural,lucid")
