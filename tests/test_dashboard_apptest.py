"""The dashboard under Streamlit's AppTest: every page renders, makes a small result, and
shows bad input as one st.error line (never a traceback).

Tiny settings come through the URL query (?method=pixel&steps=2&size=64), as a shared
link would carry them; results go to a temporary DGN_RESULTS folder.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import TINY_CLASSES, TinyNet

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
FAST = {"method": "pixel", "steps": "2", "size": "64"}
TIMEOUT = 180


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("DGN_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DGN_UPLOADS", str(tmp_path / "uploads"))
    for name in ("DGN_HOSTED", "DGN_MODELS", "DGN_MAX_STEPS", "DGN_MAX_SIZE", "DGN_MAX_BATCH"):
        monkeypatch.delenv(name, raising=False)


def app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def images(at: AppTest) -> list:
    return list(at.get("image"))


def generate(at: AppTest, label: str = "Generate") -> AppTest:
    """Press the page's ``label`` button and check that the run ended without an error."""
    button = next(b for b in at.button if b.label == label)
    assert not button.disabled
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def result_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "results").rglob("*.png"))


def image_folder(root: Path, classes=("tench", "goldfish"), n: int = 2) -> Path:
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (40, 40), (40 * k + 20 * i, 120, 200 - 30 * i)).save(root / cls / f"{i}.png")
    return root


# --------------------------------------------------------------------------- single class


def test_single_class_generates_saves_and_reloads_from_disk(tmp_path):
    at = app(**FAST, **{"class": "goldfish"})
    assert at.title[0].value == "Single class"
    assert any("1: goldfish" in c.value for c in at.caption)
    generate(at)
    assert len(images(at)) >= 1
    files = result_files(tmp_path)
    assert [f.relative_to(tmp_path / "results").as_posix() for f in files] == ["efficientnet_lite0/pixel-2-64px/seed0/1_goldfish.png"]
    rec = json.loads(files[0].with_suffix(".json").read_text())
    assert rec["target"] == "class:1" and rec["steps"] <= 2 and 0 <= rec["p_target"] <= 1
    assert files[0].with_suffix(".gif").is_file()
    assert at.query_params["class"] == "goldfish" and at.query_params["steps"] == "2"
    # a fresh session with the same link shows the saved result without computing anything
    again = app(**FAST, **{"class": "goldfish"})
    assert len(images(again)) >= 1
    assert any("from disk" in c.value for c in again.caption)
    assert any(d.label.startswith("Download all as ZIP") for d in again.get("download_button"))


def test_pretrained_help_says_how_the_preset_starts(monkeypatch):
    """The method help is built from the preset, so it follows a change of restarts."""
    from dashboard import widgets
    from dgncore.presets import get_preset

    preset = get_preset("pretrained")
    monkeypatch.setattr(widgets, "get_preset", lambda name: preset.replace(restarts=1))
    assert widgets._starts_help() == "it starts from the decoder's average code, shifted at random by the seed"
    monkeypatch.setattr(widgets, "get_preset", lambda name: preset.replace(restarts=4, prune_after=10))
    assert widgets._starts_help() == "4 starts run together and after 10 steps only the best-scoring one goes on"
    monkeypatch.setattr(widgets, "get_preset", lambda name: preset.replace(restarts=3, prune_after=0))
    assert widgets._starts_help() == "3 starts run together"


def test_single_class_bad_name_is_one_error_line():
    at = app(**FAST, **{"class": "no such class xyz"})
    assert len(at.error) == 1 and "unknown class" in at.error[0].value and "\n" not in at.error[0].value
    assert next(b for b in at.button if b.label == "Generate").disabled
    at = app(**FAST, **{"class": "shark"})  # ambiguous
    assert "ambiguous" in at.error[0].value


def test_single_class_two_methods_side_by_side(tmp_path):
    at = generate(app(**FAST, compare="untrained", n="2"))
    assert [s.value for s in at.subheader] == ["pixel", "untrained"]
    assert len(images(at)) >= 4
    assert {f.relative_to(tmp_path / "results" / "efficientnet_lite0").parent.as_posix() for f in result_files(tmp_path)} == {
        "pixel-2-64px/seed0", "pixel-2-64px/seed1", "untrained-2-64px/seed0", "untrained-2-64px/seed1"}


def test_pretrained_without_decoder_is_an_error_line():
    from dgncore.presets import DEFAULT_DECODER

    if DEFAULT_DECODER.is_file():
        pytest.skip("the decoder checkpoint exists here")
    at = app(method="pretrained", steps="2", size="64")
    assert any("decoder" in e.value for e in at.error)


def test_bad_model_name_shows_error_in_sidebar():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"model": "resnet_does_not_exist"})
    at.run()
    assert not at.exception
    assert any("Cannot use this model" in e.value and "unknown model" in e.value for e in at.sidebar.error)
    assert any("Choose a model" in i.value for i in at.info)


def test_torchscript_upload_with_sidecar_generates(tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():
        net.fc.weight.mul_(30)
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(net.eval()), buf)
    sidecar = json.dumps({"input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "classes": TINY_CLASSES}).encode()
    at = app(method="pixel", steps="2", size="32")
    at.sidebar.selectbox[0].set_value("upload a TorchScript model (.pt + .json)").run()
    at.sidebar.get("file_uploader")[0].set_value(("tiny.pt", buf.getvalue(), "application/octet-stream"))
    at.sidebar.get("file_uploader")[1].set_value(("tiny.json", sidecar, "application/json"))
    at.run()
    assert not at.exception and not at.sidebar.error
    assert any(c.value.startswith("10 classes") for c in at.sidebar.caption)
    assert at.query_params["model"].startswith("upload:")
    at.text_input(key="single.class").set_value("hen").run()
    generate(at)
    files = result_files(tmp_path)
    assert len(files) == 1 and files[0].name == "8_hen.png" and files[0].parts[-4].startswith("tiny-")
    # the layer page says plainly that TorchScript models have no layer targets
    at.switch_page("views/layers.py").run()
    assert any("no layers" in i.value for i in at.info)


# --------------------------------------------------------------------------- compound


def test_compound_generates_mix_and_singles(tmp_path):
    at = generate(app("compound", **FAST, c1="tench", c2="goldfish", w2="0.5"))
    assert len(images(at)) >= 3
    names = {f.name for f in result_files(tmp_path)}
    assert names == {"0-1_tench-goldfish.png", "0_tench.png", "1_goldfish.png"}
    rec = json.loads((result_files(tmp_path)[0].parent / "0-1_tench-goldfish.json").read_text())
    assert rec["target"] == "classes:0+1*0.5" and set(rec["p_classes"]) == {"tench", "goldfish"}
    assert len(at.get("plotly_chart")) >= 1


def test_compound_bad_inputs():
    at = app("compound", **FAST, c1="tench", c2="tench")
    assert any("appears twice" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Generate").disabled
    at = app("compound", **FAST, c1="tench", c2="zzzz-not-a-class")
    assert any("unknown class" in e.value for e in at.error)


# --------------------------------------------------------------------------- layers


def test_layers_lists_layers_and_generates_a_grid(tmp_path):
    at = app("layers", **FAST, layers="blocks.1", filters="0")
    assert at.title[0].value == "Layer hierarchy"
    assert at.multiselect[0].value == ["blocks.1"]
    generate(at)
    assert len(images(at)) == 1
    assert [f.name for f in result_files(tmp_path)] == ["filter-blocks-1-0.png"]
    assert any(m.value.startswith("**blocks.1**") for m in at.markdown)
    larger = next(b for b in at.button if b.label == "Larger")
    larger.click().run()  # opens the dialog with the image larger
    assert not at.exception


@pytest.mark.parametrize("filters, fragment", [("0-3,abc", "cannot read filters"), ("999", "out of range"), ("0-20", "at most 8")])
def test_layers_bad_filters(filters, fragment):
    at = app("layers", **FAST, layers="blocks.1", filters=filters)
    assert len(at.error) == 1 and fragment in at.error[0].value


# --------------------------------------------------------------------------- bias audit


def test_bias_audit_folder_samples_predictions_and_generation(tmp_path):
    ds = image_folder(tmp_path / "ds")
    at = app("bias_audit", **FAST, folder=str(ds))
    assert at.title[0].value == "Bias audit"
    assert any("classifier's own view" in m.value for m in at.markdown)
    assert at.selectbox(key="audit.dsclass.0").value == "tench"  # the folder that matches the class
    generate(at)
    assert len(images(at)) >= 3  # 1 generated + 2 samples
    assert len(result_files(tmp_path)) == 1


def test_bias_audit_plugin_section(monkeypatch):
    """With dgncore.audit present, a "Planted-bias demo" tab is drawn by dashboard.audit_panel.render(ctx)."""
    import importlib.machinery
    import sys
    import types

    panel = types.ModuleType("dashboard.audit_panel")
    panel.__spec__ = importlib.machinery.ModuleSpec("dashboard.audit_panel", None)

    def render(ctx):
        import streamlit as st

        st.markdown(f"plugged in: class {ctx.class_index} of {ctx.choice.name}")

    panel.render = render
    if importlib.util.find_spec("dgncore.audit") is None:
        fake = types.ModuleType("dgncore.audit")
        fake.__spec__ = importlib.machinery.ModuleSpec("dgncore.audit", None)
        monkeypatch.setitem(sys.modules, "dgncore.audit", fake)
    monkeypatch.setitem(sys.modules, "dashboard.audit_panel", panel)
    at = app("bias_audit", **FAST, **{"class": "goldfish"})
    assert [t.label for t in at.tabs] == ["Your class and samples", "Planted-bias demo"]
    assert any(m.value == "plugged in: class 1 of efficientnet_lite0" for m in at.markdown)


def test_bias_audit_zip_upload(tmp_path):
    ds = image_folder(tmp_path / "ds", classes=("goldfish", "hen"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(ds.rglob("*.png")):
            zf.write(f, f"mydata/{f.relative_to(ds).as_posix()}")  # one wrapping folder
    at = app("bias_audit", **FAST, **{"class": "hen", "source": "Upload a ZIP"})
    at.get("file_uploader")[0].set_value(("data.zip", buf.getvalue(), "application/zip"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="audit.dsclass.8").value == "hen"


def test_bias_audit_bad_inputs(tmp_path):
    at = app("bias_audit", **FAST, folder=str(tmp_path / "missing"))
    assert len(at.error) == 1 and "does not exist" in at.error[0].value
    (tmp_path / "empty").mkdir()
    at = app("bias_audit", **FAST, folder=str(tmp_path / "empty"))
    assert "no class sub-folders" in at.error[0].value
    at = app("bias_audit", **FAST, **{"source": "Upload a ZIP"})
    at.get("file_uploader")[0].set_value(("data.zip", b"not a zip", "application/zip"))
    at.run()
    assert not at.exception and any("not a readable ZIP" in e.value for e in at.error)


# --------------------------------------------------------------------------- bias audit: the demo tab and exemplars

DEMO = {"audit_methods": "untrained", "audit_seeds": "0", "audit_steps": "2"}


@pytest.fixture(scope="module")
def planted_cache(tmp_path_factory) -> Path:
    """A DGN_CACHE whose built-in planted model is a tiny one (trained in about a second)."""
    from dgncore import planted as P

    cache = tmp_path_factory.mktemp("cache")
    torch.set_num_threads(1)
    P.ensure_planted(P.PlantedConfig(pool=64, steps=3, batch=16), root=cache / "planted" / P.DEFAULT.key(), samples_per_class=2, evidence_per_class=4)
    return cache


@pytest.fixture
def demo_env(planted_cache, monkeypatch) -> Path:
    monkeypatch.setenv("DGN_CACHE", str(planted_cache))
    return planted_cache


def run_audit(at: AppTest) -> AppTest:
    return generate(at, "Run the audit")


def test_audit_demo_tab_explains_the_demo_and_its_evidence(demo_env):
    at = app("bias_audit")
    assert [t.label for t in at.tabs] == ["Your class and samples", "Planted-bias demo"]
    assert any("A test with a known answer" in m.value and "magenta stamp" in m.value for m in at.markdown)
    assert [m.label for m in at.metric][0] == "Other shapes called triangle once stamped"
    assert at.multiselect(key="audit.demo.methods").value == ["untrained"] and at.text_input(key="audit.demo.seeds").value == "0,1,2"
    assert any("No report for these settings yet" in c.value for c in at.caption)
    assert any("uses its own small built-in model" in c.value for c in at.sidebar.caption)
    assert not any("built-in model" in c.value for c in app("layers").sidebar.caption)  # only on the audit page
    at = app("bias_audit", audit_seeds="0,x")
    assert len(at.error) == 1 and "bad seeds" in at.error[0].value
    assert next(b for b in at.button if b.label == "Run the audit").disabled


def test_audit_demo_runs_shows_chart_verdict_and_comes_back_from_disk(demo_env, tmp_path):
    at = run_audit(app("bias_audit", **DEMO))
    reports = list((tmp_path / "results" / "audit").glob("planted-*/report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["methods"] == ["untrained"] and report["seeds"] == [0] and report["steps"] == {"untrained": 2}
    assert at.get("plotly_chart") and any(m.value.startswith((":green-badge[PASS] **untrained**", ":red-badge[FAIL] **untrained**")) for m in at.markdown)
    assert any("Pass rule, fixed before any run" in c.value for c in at.caption)
    assert len(images(at)) >= 5  # generated images, samples and exemplars of five classes
    assert {d.label for d in at.get("download_button")} >= {"Report page (HTML)", "Report folder (ZIP)"}
    # a new session with the same link (a reload) shows the saved report without running anything
    mtime = reports[0].stat().st_mtime
    again = app("bias_audit", **DEMO)
    assert again.get("plotly_chart") and any("from disk" in c.value for c in again.caption)
    assert reports[0].stat().st_mtime == mtime


def test_audit_of_your_own_model_on_your_folder(tmp_path):
    ds = image_folder(tmp_path / "ds")
    at = app("bias_audit", **FAST, folder=str(ds), audit_of="This model on this folder", audit_methods="pixel", audit_seeds="0", audit_steps="2")
    assert any("2 class folders" in c.value for c in at.caption)
    run_audit(at)
    report = json.loads(next((tmp_path / "results" / "audit").glob("efficientnet_lite0-*/report.json")).read_text())
    assert report["classes"] == ["tench", "goldfish"] and "cue" not in report
    assert not at.get("plotly_chart") or all(c.proto.id != "audit.cue" for c in at.get("plotly_chart"))
    assert any(m.value.startswith("**tench**") for m in at.markdown)


def test_exemplars_beside_the_generated_images(tmp_path):
    ds = image_folder(tmp_path / "ds")
    at = app("bias_audit", **FAST, folder=str(ds))
    assert any("Real images that score highest for <b>tench</b>" in m.value for m in at.markdown)
    at = app("layers", **FAST, layers="blocks.1", filters="0", folder=str(ds))
    assert any("Real images that score highest for <b>blocks.1 filter 0</b>" in m.value for m in at.markdown)
    assert len(images(at)) == 2  # 4 images: a row of the top 2 and one of the other 2
    assert [len(i.proto.imgs) for i in images(at)] == [2, 2]


# --------------------------------------------------------------------------- gallery


def test_gallery_lists_filters_and_opens_results(tmp_path):
    from dashboard import runner

    runner.run_generation("efficientnet_lite0", ["class:tench", "class:goldfish"], "pixel", 2, 0, 64)
    at = app("gallery")
    assert len(images(at)) == 2
    assert any("2 of 2 results" in c.value for c in at.caption)
    at.text_input(key="gallery.q").set_value("gold").run()
    assert len(images(at)) == 1 and at.query_params["q"] == "gold"
    next(b for b in at.button if b.label == "Open").click().run()
    assert not at.exception
    assert at.query_params["open"].endswith("1_goldfish.json")
    assert at.get("json") and at.subheader[0].value == "goldfish"


def test_gallery_empty_and_bad_folder(tmp_path):
    at = app("gallery")
    assert any("No results" in i.value for i in at.info)
    at = app("gallery", root=str(tmp_path / "nope"))
    assert len(at.error) == 1 and "does not exist" in at.error[0].value


# --------------------------------------------------------------------------- hosted mode


def test_hosted_mode_lands_on_gallery_without_uploads_or_folders(monkeypatch):
    monkeypatch.setenv("DGN_HOSTED", "1")
    at = app()
    assert at.title[0].value == "Gallery"
    assert at.sidebar.selectbox[0].options == ["efficientnet_lite0", "efficientnet_lite2"]
    assert not any(t.label == "Results folder" for t in at.text_input)
    at.switch_page("views/bias_audit.py").run()
    assert not at.exception and not at.radio  # no folder on the server, no uploads


def test_bad_server_setting_is_one_error(monkeypatch):
    monkeypatch.setenv("DGN_MAX_STEPS", "lots")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and "DGN_MAX_STEPS" in at.error[0].value


# --------------------------------------------------------------------------- the runner


def test_runner_background_run_stops_and_keeps_what_it_has(tmp_path):
    import time

    from dashboard import runner

    # a filter target never stops early (it has no probability), so only Stop ends it
    run = runner.start_background([runner.Request("efficientnet_lite0", ("filter:blocks.1:0",), "pixel", 2000, (0,), 32)])
    deadline = time.time() + 60
    while run.latest is None and time.time() < deadline:
        time.sleep(0.05)
    run.stop()
    assert run.wait(60) and run.error is None and run.bug is None
    rec = run.records[0][0]
    assert rec["cancelled"] and rec["steps"] < 2000 and Path(rec["_file"]).is_file()


def test_runner_user_errors(tmp_path):
    from dashboard import runner
    from dgncore.errors import InputError

    with pytest.raises(InputError, match="steps must be between"):
        runner.run_generation("efficientnet_lite0", ["class:tench"], "pixel", 0)
    with pytest.raises(InputError, match="nothing to generate"):
        runner.run_generation("efficientnet_lite0", ["  "], "pixel", 2)
    with pytest.raises(InputError, match="unknown method"):
        runner.run_generation("efficientnet_lite0", ["class:tench"], "magic", 2)
    assert not (tmp_path / "results").exists()
