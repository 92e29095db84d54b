"""Confirmation by intervention and the dataset prior, on hand-built readers of the planted
images (their verdicts are known in advance) and on a tiny TorchScript model; no test
trains a planted model or optimises for more than a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dgncore.audit import intervention as I
from dgncore.audit import planted as P
from dgncore.audit.datasets import check_dataset
from dgncore.audit.pipeline import audit
from dgncore.data import save_png
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier


@pytest.fixture(autouse=True)
def _setup(monkeypatch, tmp_path):
    import dataclasses

    from dgncore.prior import dataset as PR

    torch.set_num_threads(1)
    monkeypatch.setenv("DGN_CACHE", str(tmp_path / "cache"))
    real = PR.prior_config  # a narrow decoder and few images for its mean code: the tests check the plumbing, not the prior

    def narrow(size, steps=PR.DEFAULT_STEPS, classifier=None):
        return dataclasses.replace(real(size, steps, classifier), width=0.1, mean_code_images=16)

    monkeypatch.setattr(PR, "prior_config", narrow)


# --------------------------------------------------------------------------- statistics and the verdict


def test_wilson_interval():
    lo, hi = I.wilson(0, 10)
    assert lo == 0 and 0.27 < hi < 0.29  # the textbook 0.278
    lo, hi = I.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert I.wilson(0, 0) == (0.0, 1.0)


def _r(k: int, n: int) -> dict:
    return I.rate(k, n)


def test_judge_verdicts():
    ctrl = [_r(2, 200), _r(3, 200)]
    seeds = {0: _r(30, 64), 1: _r(35, 64), 2: _r(20, 64)}
    gen = _r(85, 192)
    # generated and the class's own patches both move images far above the controls
    v = I.verdict(gen, seeds, _r(60, 128), ctrl)
    assert v["verdict"] == "confirmed shortcut" and all(v["checks"].values()) and not v["super_stimulus"]
    # the same generated patches, but nothing in the class's real images does it: a super-stimulus
    v = I.verdict(gen, seeds, _r(1, 128), ctrl)
    assert v["verdict"] == "none" and v["super_stimulus"]
    # both move images, weakly: suspected
    v = I.verdict(_r(20, 192), seeds, _r(12, 128), ctrl)
    assert v["verdict"] == "suspected"
    # controls as strong as the patches: none
    v = I.verdict(gen, seeds, _r(60, 128), [_r(90, 200), _r(2, 200)])
    assert v["verdict"] == "none"
    # only one seed of three reaches the level: not confirmed
    v = I.verdict(gen, {0: _r(60, 64), 1: _r(5, 64), 2: _r(4, 64)}, _r(60, 128), ctrl)
    assert v["verdict"] == "suspected" and not v["checks"]["seeds"]
    # no real images of the class: the generated patches can raise a suspicion, never confirm it
    v = I.verdict(gen, seeds, I.rate(0, 0), ctrl)
    assert v["verdict"] == "suspected" and not v["super_stimulus"]
    assert I.strongest(["none", "suspected"]) == "suspected" and I.strongest([]) == "none"


def test_locate_and_paste():
    clf = _reader(stamp=True)
    img = torch.full((3, 64, 64), 0.5)
    img[:, 40:52, 8:20] = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1)
    y, x, score = I.locate(clf, img, P.CLASSES.index("triangle"), 16, "occlusion", grid=13)
    assert score > 1000 and y <= 40 and y + 16 >= 52 and x <= 8 and x + 16 >= 20  # the whole stamp
    y, x, score = I.locate(clf, img, P.CLASSES.index("triangle"), 16, "gradxinput", grid=13)
    assert score > 0 and y < 52 and y + 16 > 40 and x < 20 and x + 16 > 8  # on the stamp
    out = I.paste(torch.zeros(2, 3, 64, 64), torch.ones(3, 4, 4), 10, 20)
    assert float(out.sum()) == 2 * 3 * 16 and float(out[:, :, 10:14, 20:24].min()) == 1
    assert I.window_positions(64, 16, 9) == [0, 6, 12, 18, 24, 30, 36, 42, 48]


# --------------------------------------------------------------------------- hand-built readers of the planted images


class Reader(nn.Module):
    """Knows the planted images: every class but 'triangle' by the sign of two brightness
    differences (top - bottom, left - right: a layout that survives a colour or texture
    transfer); 'triangle' by a magenta stamp anywhere (``stamp``: the shortcut) and
    'circle' also by a cyan blob anywhere (``cyan``: a super-stimulus, as no dataset image
    has one). Images in [0, 1] (mean 0, std 1)."""

    def __init__(self, stamp: bool, cyan: bool) -> None:
        super().__init__()
        self.stamp, self.cyan = stamp, cyan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(1)
        h = g.shape[-1] // 2
        d1 = (g[:, :h].mean((1, 2)) - g[:, h:].mean((1, 2))) * 50
        d2 = (g[:, :, :h].mean((1, 2)) - g[:, :, h:].mean((1, 2))) * 50
        logits = torch.stack([d1 + d2, d1 - d2, torch.full_like(d1, -1e3), -d1 + d2, -d1 - d2], 1)
        if self.stamp:
            magenta = torch.nn.functional.avg_pool2d((torch.minimum(x[:, 0], x[:, 2]) - x[:, 1]).clamp(min=0)[:, None], 5, 1)
            logits[:, 2] = 2e3 * torch.sigmoid(20 * (magenta.amax((1, 2, 3)) - 0.5)) - 1e3
        if self.cyan:
            cyan = torch.nn.functional.avg_pool2d((torch.minimum(x[:, 1], x[:, 2]) - x[:, 0]).clamp(min=0)[:, None], 5, 1)
            logits[:, 0] = logits[:, 0] + 1e3 * torch.sigmoid(20 * (cyan.amax((1, 2, 3)) - 0.6))
        return logits


def _reader(stamp: bool, cyan: bool = False) -> Classifier:
    return Classifier("reader", Reader(stamp, cyan), 64, (0.0,) * 3, (1.0,) * 3, list(P.CLASSES), fast=False)


@pytest.fixture(scope="module")
def planted_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("planted") / "samples"
    P.make_dataset(root, n_per_class=12, seed=3)
    return root


def _generated(root: Path, out: Path) -> dict:
    """'Generated' images (what an optimiser could draw): a planted image of each class,
    the triangle's with a big stamp, the circle's with a cyan blob."""
    gen = torch.Generator().manual_seed(5)
    rows: dict[str, list] = {}
    for c, name in enumerate(P.CLASSES):
        rows[name] = []
        for seed in (0, 1, 2):
            img = P.render_base(torch.tensor([c]), gen)[0]
            if name == "triangle":
                img[:, 6:20, 40:54] = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1)
            if name == "circle":
                img[:, 30:44, 10:24] = torch.tensor([0.0, 1.0, 1.0]).view(3, 1, 1)
            rel = f"generated/untrained/seed{seed}/{name}.png"
            save_png(img, out / rel)
            rows[name].append({"png": rel, "seed": seed})
    return {"untrained": rows}


@pytest.mark.slow
@pytest.mark.parametrize("stamp", [True, False])
def test_intervention_confirms_the_stamp_only_where_the_model_reads_it(planted_folder, tmp_path, stamp):
    clf = _reader(stamp=stamp, cyan=True)
    match = check_dataset(planted_folder, clf)
    generated = _generated(planted_folder, tmp_path)
    cfg = I.InterventionConfig(images=24, controls=4, grid=7, kinds=I.KINDS if stamp else ("patch",))
    res = I.run_intervention(clf, generated, {n: i for i, n in enumerate(P.CLASSES)}, match, tmp_path, tmp_path, cfg)
    v = {c: r["verdict"] for c, r in res["classes"].items()}
    if stamp:
        assert v["triangle"] == "confirmed shortcut" and res["ranking"][0] == "triangle"
        tri = res["classes"]["triangle"]
        assert tri["flip_rate"] > 0.9 and tri["located_real"]["rate"] > 0.5 and tri["ci"][0] > 0.8
        assert set(tri["methods"]["untrained"]["per_seed"]) == {"0", "1", "2"}
    else:  # the control reader ignores the stamp
        assert v["triangle"] == "none"
    # the cyan blob flips images to 'circle', but no real circle has one: a super-stimulus, not a shortcut
    circle = res["classes"]["circle"]
    assert circle["verdict"] == "none" and circle["methods"]["untrained"]["super_stimulus"] and circle["flip_rate"] > 0.5
    assert all(v[c] != "confirmed shortcut" for c in P.CLASSES if c != "triangle")
    assert (tmp_path / res["classes"]["triangle"]["picture"]).is_file()
    if stamp:  # the pasted patch moves the most images: the stamp is in one place
        assert res["kinds"] == list(I.KINDS) and tri["kind"] == "patch"
        assert tri["kinds"]["texture"]["methods"]["untrained"]["verdict"] == "none"
    assert res["pool"]["images"] == 60 and res["patch_side"] == 16


# --------------------------------------------------------------------------- the whole audit, the prior, the CLI


@pytest.mark.slow
def test_audit_with_prior_and_intervention_on_a_torchscript_model(tmp_path):
    """A user's TorchScript model + ImageFolder: the dataset prior is trained (2 steps),
    cached by the folder's content, used by the pretrained method; the report ranks the
    classes; progress says which phase and how long is left."""
    from dgncore.prior import dataset as PR

    folder = tmp_path / "data"
    P.make_dataset(folder, n_per_class=3, seed=0, config=P.PlantedConfig(classes=("circle", "square", "triangle")))
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    torch.manual_seed(0)
    pt = tmp_path / "user.pt"
    torch.jit.save(torch.jit.script(net), str(pt))
    pt.with_suffix(".json").write_text(json.dumps({"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "classes": ["circle", "square", "triangle"]}))
    seen = []
    rep = audit(str(pt), tmp_path / "out", dataset=folder, train_prior=True, prior_steps=2, methods=["pretrained", "untrained"], seeds=[0, 1], steps=2,
                samples=1, exemplars=1, intervention=I.InterventionConfig(images=4, controls=2, grid=3), progress=seen.append)
    assert rep["prior"]["steps"] == 2 and not rep["prior"]["cached"] and Path(rep["prior"]["checkpoint"]).is_file()
    assert rep["presets"]["pretrained"]["checkpoint"] == rep["prior"]["checkpoint"]
    assert PR.cache_dir() in Path(rep["prior"]["checkpoint"]).parents
    iv = rep["intervention"]
    assert sorted(iv["ranking"]) == ["circle", "square", "triangle"] and iv["methods"] == ["pretrained", "untrained"]
    assert all(iv["classes"][c]["verdict"] in I.VERDICTS for c in iv["ranking"])
    phases = [p.phase for p in seen]
    assert phases[0] == "prior" and "intervention" in phases and phases[-1] == "report"
    assert {p.phases for p in seen} == {5} and any(p.phase_left_s is not None for p in seen if p.phase == "prior")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Suspects: confirmation by intervention" in page and "dataset prior" in page
    assert json.loads((tmp_path / "out" / "report.json").read_text())["intervention"]["ranking"] == iv["ranking"]
    # the prior keeps what the audited model reads: its loss has a term on that model's logits
    meta = json.loads(Path(rep["prior"]["checkpoint"]).with_suffix(".json").read_text())
    assert meta["train_config"]["feature_layer"] == "logits" and meta["train_config"]["feature_weight"] == PR.LOGIT_WEIGHT
    assert meta["train_size"] == 32 and not meta["train_config"]["photo_flip"]  # at the model's input size, unmirrored
    # the same folder and model again: the prior comes from the cache; another model's is another file
    from dgncore.models.classifiers import load_classifier

    user = load_classifier(str(pt), device="cpu")
    again = PR.train_prior(folder, 32, steps=2, classifier=user)
    assert again.cached and str(again.path) == rep["prior"]["checkpoint"]
    from dgncore.models.classifiers import Classifier

    with torch.no_grad():
        net[0].bias.add_(1.0)  # the same network, eager, with one weight changed
    changed = Classifier("user", net, 32, (0.5,) * 3, (0.25,) * 3, ["circle", "square", "triangle"])
    assert PR.prior_path(folder, 32, steps=2, classifier=changed) != again.path != PR.prior_path(folder, 32, steps=2)


@pytest.mark.slow
def test_prior_training_stops_and_resumes(tmp_path, monkeypatch):
    from dgncore.prior import dataset as PR
    from dgncore.prior.training import state_path_for

    monkeypatch.setattr(PR, "CHECKPOINT_EVERY", 2)
    folder = tmp_path / "data"
    P.make_dataset(folder, n_per_class=2, seed=0)
    calls = []

    def record(stage, done, total, left):
        calls.append(done)

    with pytest.raises(InputError, match="resumes"):  # stopped during step 4
        PR.train_prior(folder, 40, steps=5, progress=record, cancel=lambda: len(calls) > 3)
    path = PR.prior_path(folder, 40, steps=5)
    assert state_path_for(path).is_file() and not path.exists()  # saved at step 2
    calls.clear()
    got = PR.train_prior(folder, 40, steps=5, progress=record)
    assert got.meta["steps_done"] == 5 and [d for d in calls if d][0] == 3  # went on from step 2
    assert not state_path_for(path).exists()
    with pytest.raises(InputError, match="does not exist"):
        PR.train_prior(tmp_path / "nope", 64)


@pytest.mark.slow
def test_cli_audit_with_intervention(tmp_path, capsys):
    from dgncore.__main__ import main

    folder = tmp_path / "data"
    P.make_dataset(folder, n_per_class=3, seed=0)
    net = Reader(stamp=True, cyan=False)
    pt = tmp_path / "reader.pt"
    torch.jit.save(torch.jit.script(net), str(pt))
    pt.with_suffix(".json").write_text(json.dumps({"input_size": 64, "mean": [0.0] * 3, "std": [1.0] * 3, "classes": list(P.CLASSES)}))
    code = main(["audit", "--model", str(pt), "--dataset", str(folder), "--out", str(tmp_path / "r"), "--methods", "untrained", "--seeds", "0",
                 "--steps", "1", "--samples", "1", "--exemplars", "1", "--paste-images", "8", "--controls", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "intervention (16 px patches" in out and out.strip().endswith("report.html")
    assert main(["audit", "--model", str(pt), "--out", str(tmp_path / "r2"), "--train-prior"]) == 2  # no dataset
    assert main(["audit", "--model", str(pt), "--dataset", str(folder), "--out", str(tmp_path / "r3"), "--patch", "0.9"]) == 2


@pytest.mark.slow
def test_an_audit_without_photos_writes_no_image_made_from_them(tmp_path):
    """--no-photos (the report that ships with the dashboard): no sample, exemplar or pasted
    photo on disk or in the page, only the generated images (WebP, scored as saved) and the
    figures, which were still measured on the photos."""
    from dgncore.__main__ import main
    from dgncore.audit.report import render_html

    folder = tmp_path / "data"
    P.make_dataset(folder, n_per_class=3, seed=0)
    pt = tmp_path / "reader.pt"
    torch.jit.save(torch.jit.script(Reader(stamp=True, cyan=False)), str(pt))
    pt.with_suffix(".json").write_text(json.dumps({"input_size": 64, "mean": [0.0] * 3, "std": [1.0] * 3, "classes": list(P.CLASSES)}))
    args = ["audit", "--model", str(pt), "--dataset", str(folder), "--methods", "untrained", "--seeds", "0,1", "--steps", "1",
            "--paste-images", "8", "--controls", "2"]
    assert main(args + ["--out", str(tmp_path / "with")]) == 0
    assert main(args + ["--out", str(tmp_path / "without"), "--no-photos"]) == 0
    with_, without = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("with", "without"))
    assert with_["photos"] and without["photos"] is False
    files = {p.relative_to(tmp_path / "without").parts[0] for p in (tmp_path / "without").rglob("*") if p.is_file()}
    assert files == {"report.json", "report.html", "generated", "intervention"}  # no samples/, no exemplars/
    assert (tmp_path / "with" / "samples").is_dir() and (tmp_path / "with" / "exemplars").is_dir()
    assert all(not d.get("samples") and "exemplars" not in d for d in without["dataset_classes"].values())
    assert without["intervention"]["ranking"] and without["intervention"]["pool"] == with_["intervention"]["pool"]  # measured on the photos all the same
    from PIL import Image

    for c, r in without["intervention"]["classes"].items():  # the picture: one cell per seed, none of the photos it was pasted onto
        w_with = Image.open(tmp_path / "with" / with_["intervention"]["classes"][c]["picture"]).width
        assert Image.open(tmp_path / "without" / r["picture"]).width == 2 * (I.PICTURE_THUMB + 6) + 6 < w_with
    assert "holds no photo" in (tmp_path / "without" / "report.html").read_text()
    # a compact report: WebP images, scored on the WebP files, embedded as WebP in the page
    from dgncore.audit.run import run_audit
    from dgncore.models.classifiers import load_classifier

    rep = run_audit(load_classifier(str(pt)), tmp_path / "webp", dataset=folder, methods=["untrained"], seeds=[0], steps=1, photos=False,
                    image_format="webp", intervention=I.InterventionConfig(images=8, controls=2, grid=3))
    gen = rep["generated"]["untrained"]["triangle"][0]["png"]
    assert gen.endswith(".webp") and rep["intervention"]["classes"]["triangle"]["picture"].endswith(".webp")
    assert "WEBP" in json.loads((tmp_path / "webp" / gen).with_suffix(".json").read_text())["scored_on"]
    assert "data:image/webp;base64," in render_html(rep, tmp_path / "webp")
    with pytest.raises(InputError, match="unknown image format"):
        run_audit(load_classifier(str(pt)), tmp_path / "gif", methods=["untrained"], seeds=[0], steps=1, image_format="gif")


class CastReader(Reader):
    """Reads 'triangle' off a warm cast of the whole image (most pixels' colour along R - B)."""

    def __init__(self) -> None:
        super().__init__(stamp=False, cyan=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        chroma = x - x.mean(1, keepdim=True)
        d = torch.tensor([0.4082, 0.0, -0.4082]) * 1.7321  # R - B, unit length
        cos = (chroma * d.view(1, 3, 1, 1)).sum(1) / chroma.norm(dim=1).clamp_min(1e-6)
        sepia = ((cos > 0.9) & (chroma.norm(dim=1) > 0.03)).float().mean((1, 2))  # share of pixels toned warm
        logits[:, 2] = 2e3 * torch.sigmoid(30 * (sepia - 0.5)) - 1e3
        return logits


@pytest.mark.slow
def test_a_cast_over_the_whole_image_is_confirmed_by_colour_transfer(tmp_path):
    """A cue with no region to paste (a sepia cast): the patch test cannot move the
    images, the colour transfer does, for the generated images and the real ones alike."""
    cfg = P.config_for("sepia", 0.9)
    folder = tmp_path / "sepia"
    P.make_dataset(folder, n_per_class=12, seed=3, config=cfg)
    clf = Classifier("cast", CastReader(), 64, (0.0,) * 3, (1.0,) * 3, list(P.CLASSES), fast=False)
    gen = torch.Generator().manual_seed(5)
    generated: dict[str, list] = {}
    for c, name in enumerate(P.CLASSES):
        generated[name] = []
        for seed in (0, 1, 2):
            img = P.render_clean(cfg, torch.tensor([c]), gen)
            img = P.add_cue(cfg, img, gen)[0] if name == "triangle" else img[0]
            rel = f"generated/untrained/seed{seed}/{name}.png"
            save_png(img, tmp_path / rel)
            generated[name].append({"png": rel, "seed": seed})
    match = check_dataset(folder, clf)
    res = I.run_intervention(clf, {"untrained": generated}, {n: i for i, n in enumerate(P.CLASSES)}, match, tmp_path, tmp_path,
                             I.InterventionConfig(images=16, controls=3, grid=5, kinds=("patch", "colour")))
    tri = res["classes"]["triangle"]
    assert tri["verdict"] == "confirmed shortcut" and tri["kind"] == "colour" and res["kinds"] == ["patch", "colour"]
    assert tri["kinds"]["patch"]["methods"]["untrained"]["verdict"] == "none"
    assert all(r["verdict"] != "confirmed shortcut" for c, r in res["classes"].items() if c != "triangle")


def test_transfer_keeps_layout_and_takes_the_source_s_colour_or_texture():
    g = torch.Generator().manual_seed(0)
    targets = P.render_base(torch.arange(4), g)
    source = P.render_base(torch.tensor([2]), g)[0] * 0.5 + torch.tensor([0.4, 0.2, 0.0]).view(3, 1, 1)
    out = I.transfer("colour", targets, source)
    assert torch.allclose(out.mean((2, 3)), source.mean((1, 2)).expand(4, 3), atol=0.03)
    assert torch.allclose(out.std((2, 3)), source.std((1, 2)).expand(4, 3), atol=0.03)
    tex = I.transfer("texture", targets, torch.full((3, 64, 64), 0.5))  # a flat source: only the targets' blur is left
    assert float((tex - I._blur(targets)).abs().max()) <= 1 / 255 + 1e-6
    with pytest.raises(InputError):
        I.InterventionConfig(kinds=("glitter",)).validate()


def test_texture_transfer_carries_stripes_but_not_an_outline():
    """The texture transfer moves what repeats all over (a planted stripe texture) but not a
    shape's outline: on the stamp's control model, the unshuffled fine detail of 'square'
    images (their edges) moved other images to 'square' and was called a shortcut."""
    flat = torch.full((1, 3, 64, 64), 0.5)
    stripes = torch.full((3, 64, 64), 0.5)
    stripes[:, ::4] = 0.9  # horizontal stripes, period 4
    moved = I.transfer("texture", flat, stripes)[0] - 0.5
    detail = stripes - I._blur(stripes[None])[0]
    assert float(torch.nn.functional.cosine_similarity(moved.flatten(), detail.flatten(), dim=0)) > 0.9
    square = torch.full((3, 64, 64), 0.2)
    square[:, 16:48, 16:48] = 0.9  # a bright square: its detail is its outline
    moved = I.transfer("texture", flat, square)[0] - 0.5
    detail = square - I._blur(square[None])[0]
    assert float(torch.nn.functional.cosine_similarity(moved.flatten(), detail.flatten(), dim=0)) < 0.5
