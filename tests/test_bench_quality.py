"""bench/quality.py and bench/peers.py: method names, class sets, summary, contact sheet, Lucent."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import peers  # noqa: E402
import quality  # noqa: E402

from dgncore.data import holdout_split, image_files  # noqa: E402
from dgncore.drawing.registry import PRESETS  # noqa: E402
from dgncore.errors import InputError  # noqa: E402
from dgncore.evaluation import DEFAULT_PHOTOS, PhotoBank, photo_class  # noqa: E402


def test_peer_and_method_names():
    assert peers.parse_peer("lucent") == (256, 224)
    assert peers.parse_peer("lucent64") == (64, 224) and peers.parse_peer("lucent64@128") == (64, 128)
    assert peers.parse_peer("fourier") is None and peers.parse_peer("lucentx") is None
    with pytest.raises(InputError):
        peers.parse_peer("lucent0")
    methods = quality.parse_methods(",".join([*PRESETS, "lucent", "lucent64", "lucent@128"]))
    assert [m.name for m in methods if not m.is_peer] == list(PRESETS)  # every preset, none hard-coded
    assert [(m.steps, m.size) for m in methods if m.is_peer] == [(256, 224), (64, 224), (256, 128)]
    with pytest.raises(InputError, match="unknown method"):
        quality.parse_methods("fourier,nope")
    longer = quality.parse_methods("natural:160")[0]  # a preset at another step count
    assert longer.name == "natural-160" and longer.preset.steps == 160 and longer.preset.method == "natural"
    (varied,) = quality.parse_methods("natural:96+views=2+lr_schedule=cosine")  # and with other settings
    assert varied.name == "natural-96-views=2-lr_schedule=cosine"
    assert (varied.preset.steps, varied.preset.views, varied.preset.lr_schedule) == (96, 2, "cosine")
    with pytest.raises(InputError, match="KEY=VALUE"):
        quality.parse_methods("natural+views")
    with pytest.raises(InputError, match="unknown preset setting"):
        quality.parse_methods("natural+colour=2")


def test_decoder_methods_name_their_file(tmp_path):
    """pretrained[:STEPS]=FILE draws through that decoder file; other methods take none."""
    from dgncore.paths import DEFAULT_DECODER

    other = tmp_path / "photos.safetensors"
    other.write_bytes(b"")  # only its existence is checked here
    m = quality.parse_methods(f"pretrained:100={other}")[0]
    assert m.name == "pretrained-100-photos" and m.preset.checkpoint == str(other) and m.preset.steps == 100
    assert quality.parse_methods("pretrained")[0].preset.checkpoint == str(DEFAULT_DECODER)
    with pytest.raises(InputError, match="unknown method"):
        quality.parse_methods(f"natural={other}")  # natural draws through no decoder
    with pytest.raises(InputError, match="no decoder file"):
        quality.parse_methods(f"pretrained={tmp_path / 'missing.safetensors'}")


@pytest.mark.skipif(not DEFAULT_PHOTOS.is_dir(), reason="no photo folder beside the checkout")
def test_class_sets_follow_the_photo_split():
    """report = every 6th held-out photo's class, tune = classes of training photos."""
    from dgncore.models.classifiers import load_classifier

    train, held = holdout_split(image_files(DEFAULT_PHOTOS))
    clf = load_classifier("efficientnet_lite0")
    report = [t.units[0] for t in quality.parse_classes("report", clf)]
    assert report == [photo_class(f) for f in held[::6]]
    tune = {t.units[0] for t in quality.parse_classes("tune", clf)}
    assert len(tune) == len(quality.TUNE) and tune <= {photo_class(f) for f in train}


def _rows(tmp_path: Path) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for method, seconds, p in (("fourier", 2.0, 0.95), ("lucent", 40.0, 1.0)):
        (tmp_path / method).mkdir()
        for c, label in ((0, "tench"), (1, "goldfish")):
            for seed in (0, 1):
                png = f"{method}/c{c}_s{seed}.png"
                Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / png)
                emb = torch.nn.functional.normalize(torch.tensor([1.0, float(seed if method == "fourier" else 0)]), dim=0)
                rows.append({"method": method, "class": c, "label": label, "seed": seed, "seconds": seconds + seed, "steps": 10,
                             "p_target": p - 0.1 * seed, "rank": 1, "png": png, "lite2_rank": 1 + c, "lite2_p": 0.5,
                             "lite2_top1": c == 0, "lite2_top5": True, "plausibility": None if c == 1 else 3 + seed,
                             "_embedding": emb})
    return rows


def test_summary_and_contact_sheet(tmp_path):
    rows = _rows(tmp_path)
    methods = quality.parse_methods("fourier,lucent")
    summary = {s["method"]: s for s in quality.summarise(rows, methods)}
    f, lu = summary["fourier"], summary["lucent"]
    assert f["images"] == 4 and f["median_s"] == 2.5 and lu["median_s"] == 40.5
    assert f["vs_lucent"] == pytest.approx(2.5 / 40.5) and lu["vs_lucent"] == 1.0 and f["reference"] == "lucent"
    assert f["p_ok"] == 2 and lu["p_ok"] == 4 and f["lite2_top1"] == 2 and f["lite2_top5"] == 4
    assert f["median_plausibility"] == 3.5 and f["with_photo"] == 2
    assert lu["near_duplicates"] == 2 and lu["pairs"] == 2 and lu["diversity"] == pytest.approx(0.0, abs=1e-6)
    assert f["near_duplicates"] == 0 and f["diversity"] == pytest.approx(1 - 2**-0.5, abs=1e-5)
    photo = tmp_path / "photos" / "n01440764_tench.png"
    photo.parent.mkdir()
    Image.new("RGB", (40, 30), "red").save(photo)
    bank = PhotoBank(photo.parent, [photo.name], [0], torch.ones(1, 2))
    sheet = quality.contact_sheet(rows, list(summary.values()), 1, bank, tmp_path, cell=32)
    with Image.open(sheet) as im:
        arr = np.asarray(im.convert("RGB"))
    assert sheet.name == "sheet_seed1.png" and arr.shape[0] > 3 * 32 and arr.shape[1] > 2 * 32
    # the photo row shows the tench photo (red) in the first column
    y = 34 + 2 * (32 + 16 + 4) + 16
    assert tuple(arr[y, 170 + 16]) == (255, 0, 0)


@pytest.mark.skipif(not peers.lucent_available(), reason="bench extras not installed (pip install --no-deps -r bench/requirements.txt)")
def test_lucent_runs_on_our_classifier_and_leaves_no_hooks(tiny_classifier):
    clf = tiny_classifier
    run = peers.run_lucent(clf, 3, seed=1, steps=(4, 2), size=32)
    assert set(run.images) == {2, 4} and run.images[4].shape == (1, 3, 32, 32)
    assert 0 <= float(run.images[4].min()) and float(run.images[4].max()) <= 1 and 0 < run.seconds[2] <= run.seconds[4]
    assert not any(m._forward_hooks for m in clf.model.modules())  # lucent hooked a copy
    again = peers.run_lucent(clf, 3, seed=1, steps=(2,), size=32)
    assert torch.equal(again.images[2], run.images[2])  # seeded: a 2-step run is the first 2 steps of a longer one
    got = peers.lucent_until(clf, 3, p=0.0, seed=1, steps=6, size=32, check_every=3)
    assert got.steps == 3 and got.image.shape == (3, 32, 32)
    assert peers.lucent_until(clf, 3, p=1.01, seed=1, steps=6, size=32, check_every=4).steps == 6
