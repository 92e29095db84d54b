"""The dashboard under Streamlit's AppTest: every page renders, makes a small result, and
shows bad input as one st.error line (never a traceback).

Tiny settings come through the URL query (?method=pixel&steps=2&size=64), as a shared
link would carry them; results go to a temporary DGN_RESULTS folder, and the shipped
examples are replaced by an empty folder (DGN_EXAMPLES) except where a test is about them.
A run goes on in a background thread while the page's live view (a fragment) redraws
itself; :func:`generate` waits for it and reruns the page, as the fragment does.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import TINY_CLASSES, TinyNet
from PIL import Image

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
    (tmp_path / "no-examples").mkdir()
    monkeypatch.setenv("DGN_EXAMPLES", str(tmp_path / "no-examples"))
    for name in ("DGN_HOSTED", "DGN_MODELS", "DGN_MAX_STEPS", "DGN_MAX_SIZE", "DGN_MAX_BATCH", "DGN_JOB_TIMEOUT"):
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


def state(at: AppTest, key: str, default=None):
    try:
        return at.session_state[key]
    except KeyError:
        return default


def settle(at: AppTest, timeout: float = TIMEOUT) -> AppTest:
    """Wait until the session's runs and audit jobs have ended, then rerun the page (what
    the live fragment does by itself in a browser)."""
    for run in (state(at, "_dgn_runs") or {}).values():
        assert run.wait(timeout)
    job = state(at, "audit.job")
    deadline = time.monotonic() + timeout
    while job is not None and not job.status().final and time.monotonic() < deadline:
        time.sleep(0.1)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def generate(at: AppTest, label: str = "Generate") -> AppTest:
    """Press the page's ``label`` button and check that the run ended without an error."""
    button = next(b for b in at.button if b.label == label)
    assert not button.disabled
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    settle(at)
    assert not at.error, [e.value for e in at.error]
    return at


def markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def result_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "results").rglob("*.png"))


def image_folder(root: Path, classes=("tench", "goldfish"), n: int = 2) -> Path:
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (40, 40), (40 * k + 20 * i, 120, 200 - 30 * i)).save(root / cls / f"{i}.png")
    return root


# --------------------------------------------------------------------------- start page


@pytest.mark.slow
def test_start_page_shows_examples_and_three_doors(monkeypatch):
    from dashboard.showcase import EXAMPLES

    monkeypatch.setenv("DGN_EXAMPLES", str(EXAMPLES))  # the examples that ship
    at = app()
    assert at.title[0].value == "DGN Explorer"
    assert len(images(at)) == 6
    assert sum("looks like photos of" in c.value for c in at.caption) == 6  # each says which real photos it is nearest to
    from dashboard import showcase, words
    from dgncore.drawing.registry import DEFAULT_METHOD, METHODS

    shown = [m for c in at.caption for m in METHODS if c.value.endswith(words.method_short(m))]
    assert shown == [DEFAULT_METHOD] * 6  # the first screen leads with the pictures a person names
    strip = showcase.strip()
    ranks = [r["second_opinion"]["photo_rank"] or 10**6 for r in strip]
    assert ranks == sorted(ranks) and ranks[0] == 1  # nearest to a real photo of their class first
    links = [el.proto.label for el in at.get("page_link")]
    assert links[-3:] == ["See a class", "Audit a model", "Browse the gallery"] and len(links) == 6 + 1 + 3
    assert "side by side" in links[6]  # the other method is a click away
    # each example opens the See-a-class page on its own settings, where it is shown from disk
    first = at.get("page_link")[0].proto
    assert first.page == "single"
    again = app("single_class", **dict(urllib.parse.parse_qsl(first.query_string)))
    assert any("ready-made example" in c.value for c in again.caption), (
        "the shipped examples no longer match the presets: regenerate them (dashboard/examples/README.md)")
    # ... and the side-by-side link opens both methods' examples from disk, each with its own preset's steps
    both = app("single_class", **dict(urllib.parse.parse_qsl(at.get("page_link")[6].proto.query_string)))
    assert len(images(both)) == 2 and any("ready-made example" in c.value for c in both.caption)


def test_start_page_without_examples_says_so():
    at = app()
    assert any("No ready-made examples" in i.value for i in at.info)


def test_an_old_link_to_the_single_class_page_still_opens_it():
    at = app(**FAST, **{"class": "goldfish"})
    assert at.title[0].value == "See a class" and at.selectbox(key="single.class").value == 1


# --------------------------------------------------------------------------- single class


@pytest.mark.slow
def test_single_class_generates_saves_and_reloads_from_disk(tmp_path):
    at = app("single_class", **FAST, **{"class": "goldfish"})
    assert at.title[0].value == "See a class"
    assert at.selectbox(key="single.class").value == 1
    assert any(i.value.startswith("Not made yet with these settings") for i in at.info)
    assert any(re.search(r"(Takes up to|at most) about \d+ s", c.value) and "on this server" in c.value for c in at.caption)
    generate(at)
    assert len(images(at)) >= 1
    files = result_files(tmp_path)
    assert [f.relative_to(tmp_path / "results").as_posix() for f in files] == ["efficientnet_lite0/pixel-2-64px/seed0/1_goldfish.png"]
    rec = json.loads(files[0].with_suffix(".json").read_text())
    assert rec["target"] == "class:1" and rec["steps"] <= 2 and 0 <= rec["p_target"] <= 1
    assert rec["second_opinion"]["model"] == "efficientnet_lite2" and rec["second_opinion"]["rank"] >= 1
    assert files[0].with_suffix(".gif").is_file()
    assert at.query_params["class"] == "goldfish" and at.query_params["steps"] == "2"
    # said in words: how sure it is and which guess, then the second network's opinion
    assert any(m.startswith("**") and "goldfish, its" in m and "guess" in m for m in markdown(at))
    assert any("second network" in m and "goldfish" in m for m in markdown(at))
    # a fresh session with the same link shows the saved result without computing anything
    again = app("single_class", **FAST, **{"class": "goldfish"})
    assert len(images(again)) >= 1
    assert any("from disk" in c.value for c in again.caption)
    assert any(d.label.startswith("Download all as ZIP") for d in again.get("download_button"))


def test_the_class_list_is_one_searchable_select_and_the_rest_is_under_advanced():
    at = app("single_class")
    picker = at.selectbox(key="single.class")
    assert len(picker.options) == 1000 and picker.value == 0
    assert picker.options[105].startswith("koala · 105 · koala bear")
    picker.select(105).run()
    assert at.query_params["class"] == "koala"
    expander = at.expander[0]
    assert expander.label.startswith("Advanced") and not expander.proto.expanded
    inside = {w.label for w in expander.selectbox} | {w.label for w in expander.number_input}
    assert {"Method", "Steps (at most)", "Picture size (px)", "Variant", "Pictures"} <= inside
    assert [b.label for b in at.main.button][:2] == ["Generate", "Copy link"]
    assert app("single_class", **FAST).expander[0].proto.expanded  # a link that sets them opens it


def test_methods_are_named_by_what_a_person_gets_and_come_from_dgncore(monkeypatch):
    from dgncore.drawing import registry

    at = app("single_class")
    method = at.selectbox(key="single.method")
    assert list(method.options) == [registry.method_label(m) for m in registry.METHODS]
    assert "Raw pixels: the noise baseline" in method.options and "Fourier: Lucid-style" in method.options
    # a method dgncore adds later is listed (by its id until it has a label)
    monkeypatch.setattr(registry, "METHODS", registry.METHODS + ("brand-new",))
    assert "brand-new" in app("single_class").selectbox(key="single.method").options


def test_copy_link_shows_the_view_with_its_settings():
    at = app("single_class", **FAST, **{"class": "koala"})
    next(b for b in at.button if b.label == "Copy link").click().run()
    link = at.code[0].value
    assert "class=koala" in link and "method=pixel" in link and "steps=2" in link


@pytest.mark.slow
def test_single_class_bad_name_is_one_error_line():
    at = app("single_class", **FAST, **{"class": "no such class xyz"})
    assert len(at.error) == 1 and "unknown class" in at.error[0].value and "\n" not in at.error[0].value
    assert at.selectbox(key="single.class").value == 0  # the page still works, on the default class
    at = app("single_class", **FAST, **{"class": "shark"})  # ambiguous
    assert "ambiguous" in at.error[0].value


@pytest.mark.slow
def test_single_class_two_methods_side_by_side(tmp_path):
    at = generate(app("single_class", **FAST, compare="untrained", n="2"))
    assert [s.value for s in at.subheader] == ["Raw pixels: the noise baseline", "Random generator (paper, 4.1)"]
    assert len(images(at)) >= 4
    assert {f.relative_to(tmp_path / "results" / "efficientnet_lite0").parent.as_posix() for f in result_files(tmp_path)} == {
        "pixel-2-64px/seed0", "pixel-2-64px/seed1", "untrained-2-64px/seed0", "untrained-2-64px/seed1"}


def test_a_method_without_its_decoder_is_an_error_line(monkeypatch, tmp_path):
    from dgncore.drawing import registry

    missing = registry.PRESETS["pretrained"].replace(checkpoint=str(tmp_path / "missing.safetensors"))
    monkeypatch.setitem(registry.PRESETS, "pretrained", missing)
    at = app("single_class", method="pretrained", steps="2", size="64")
    assert any("decoder" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Generate").disabled


@pytest.mark.slow
def test_the_live_view_shows_the_wait_in_seconds_and_stop_works_while_queued(tmp_path):
    """A long job of another visitor holds the queue: the page says where this run waits
    and how long that takes, in seconds; Stop takes it out of the queue."""
    from dgncore.serving.specs import JobSpec
    from dgncore.serving.worker import get_queue, reset_queue

    reset_queue()
    queue = get_queue()
    blocker = queue.submit(JobSpec(("filter:blocks.1:0",), method="pixel", steps=20_000, size=32, out_dir="blocker",
                                   overrides={"early_stop": 0}), "another visitor")
    try:
        at = app("single_class", **FAST, **{"class": "koala"})
        next(b for b in at.button if b.label == "Generate").click().run()
        run = at.session_state["_dgn_runs"]["single"]
        deadline = time.monotonic() + 60
        while not run.poll().waiting and time.monotonic() < deadline:
            time.sleep(0.05)
        at.run()
        status = at.status[0]
        assert status.state == "running" and "next in the queue" in status.label and re.search(r"about \d+ s left in all", status.label)
        next(b for b in at.button if b.label == "Stop").click().run()
        assert run.wait(30) and run.cancelled and run.records == [[]]
        settle(at)
        assert any(w.value.startswith("Stopped.") for w in at.warning)
        assert not result_files(tmp_path)
    finally:
        queue.cancel(blocker)
        reset_queue()


def test_a_link_opens_on_the_ready_made_example_with_its_settings(tmp_path, monkeypatch):
    """An example made with exactly the page's settings is shown from disk, nothing computed."""
    from dgncore.__main__ import main

    examples = tmp_path / "examples"
    assert main(["gallery", "--classes", "koala", "--method", "pixel", "--steps", "2", "--size", "64", "--format", "webp",
                 "--out", str(examples / "pixel")]) == 0
    monkeypatch.setenv("DGN_EXAMPLES", str(examples))
    at = app("single_class", **FAST, **{"class": "koala"})
    assert any("ready-made example" in c.value for c in at.caption)
    assert len(images(at)) == 1 and not result_files(tmp_path)
    assert any(d.label == "WEBP" for d in at.get("download_button"))


def test_bad_model_name_shows_error_in_sidebar():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"model": "resnet_does_not_exist"})
    at.run()
    assert not at.exception and not at.sidebar.error  # the start page shows saved pictures: it loads no model
    at.switch_page("views/single_class.py").run()
    assert any("Cannot use this model" in e.value and "unknown model" in e.value for e in at.sidebar.error)
    assert any("Choose a model" in i.value for i in at.info)


EVIL = "<img src=x onerror=alert(1)>"


def test_torchscript_upload_with_sidecar_generates_and_its_names_are_escaped(tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():
        net.fc.weight.mul_(30)
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(net.eval()), buf)
    classes = list(TINY_CLASSES)
    classes[8] = f"hen {EVIL} **loud** [link](http://example.com)"
    sidecar = json.dumps({"input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "classes": classes}).encode()
    at = app("single_class", method="pixel", steps="2", size="32")
    at.sidebar.selectbox[0].set_value("upload a TorchScript model (.pt + .json)").run()
    at.sidebar.get("file_uploader")[0].set_value(("tiny.pt", buf.getvalue(), "application/octet-stream"))
    at.sidebar.get("file_uploader")[1].set_value(("tiny.json", sidecar, "application/json"))
    at.run()
    assert not at.exception and not at.sidebar.error
    assert any(c.value.startswith("10 classes") for c in at.sidebar.caption)
    assert at.query_params["model"].startswith("upload:")
    at.selectbox(key="single.class").select(8).run()
    generate(at)
    files = result_files(tmp_path)
    assert len(files) == 1 and files[0].name.startswith("8_hen") and files[0].parts[-4].startswith("tiny-")
    assert "second_opinion" not in json.loads(files[0].with_suffix(".json").read_text())  # not an ImageNet model
    # the name reaches the page only escaped: no HTML, no emphasis, no link
    shown = markdown(at) + [c.value for c in at.caption]
    said = [m for m in shown if "hen" in m and "onerror" in m]
    assert said and all(EVIL not in m and "**loud**" not in m and "[link](" not in m for m in said)
    assert any("\\<img" in m and "\\*\\*loud\\*\\*" in m for m in said)
    # the layer page says plainly that TorchScript models have no layer targets
    at.switch_page("views/layers.py").run()
    assert any("no layers" in i.value for i in at.info)


# --------------------------------------------------------------------------- compound


@pytest.mark.slow
def test_compound_generates_mix_and_singles(tmp_path):
    at = generate(app("compound", **FAST, c1="tench", c2="goldfish", w2="0.5"))
    assert len(images(at)) >= 3
    names = {f.name for f in result_files(tmp_path)}
    assert names == {"0-1_tench-goldfish.png", "0_tench.png", "1_goldfish.png"}
    rec = json.loads((result_files(tmp_path)[0].parent / "0-1_tench-goldfish.json").read_text())
    assert rec["target"] == "classes:0+1*0.5" and set(rec["p_classes"]) == {"tench", "goldfish"}
    assert rec["second_opinion"]["model"] == "efficientnet_lite2"
    assert len(at.get("plotly_chart")) >= 1


def test_compound_bad_inputs():
    at = app("compound", **FAST, c1="tench", c2="tench")
    assert any("appears twice" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Generate").disabled
    at = app("compound", **FAST, c1="tench", c2="zzzz-not-a-class")
    assert any("unknown class" in e.value for e in at.error)


# --------------------------------------------------------------------------- layers


@pytest.mark.slow
def test_layers_lists_layers_and_generates_a_grid(tmp_path):
    at = app("layers", **FAST, layers="blocks.1", filters="0")
    assert at.title[0].value == "Inside the layers"
    assert at.multiselect[0].value == ["blocks.1"]
    assert "blocks.1 · depth" in at.multiselect[0].options[[o.split(" · ")[0] for o in at.multiselect[0].options].index("blocks.1")]
    generate(at)
    assert len(images(at)) == 1
    assert [f.name for f in result_files(tmp_path)] == ["filter-blocks-1-0.png"]
    assert any(m.startswith("**blocks.1**") for m in markdown(at))
    assert "second_opinion" not in json.loads(result_files(tmp_path)[0].with_suffix(".json").read_text())  # filters: none
    next(b for b in at.button if b.label == "Open").click().run()  # the picture on a page of its own: the gallery's, a link to share
    assert not at.exception and at.query_params["open"].endswith("filter-blocks-1-0.json")
    assert at.subheader and at.subheader[0].value.startswith("blocks.1")


@pytest.mark.slow
def test_layers_open_on_the_shipped_atlas_of_every_stage(monkeypatch, tmp_path):
    from dashboard.showcase import EXAMPLES

    monkeypatch.setenv("DGN_EXAMPLES", str(EXAMPLES))
    at = app("layers")
    assert len(at.multiselect[0].value) == 7 and at.text_input(key="layers.filters").value == "0-3"
    assert len(images(at)) == 28 and not result_files(tmp_path)  # from disk, nothing computed
    assert any("ready-made example" in c.value for c in at.caption)
    assert [m.split("**")[1] for m in markdown(at) if m.startswith("**blocks.")] == at.multiselect[0].value  # shallow to deep


def test_layers_open_within_a_small_batch_limit(monkeypatch):
    monkeypatch.setenv("DGN_MAX_BATCH", "4")
    at = app("layers")
    chosen = at.multiselect[0].value
    assert not at.error and len(chosen) == 4 and chosen[0] == "blocks.0" and chosen[-1] == "blocks.6"  # shallow to deep
    assert at.text_input(key="layers.filters").value == "0"


@pytest.mark.slow
@pytest.mark.parametrize("filters, fragment", [("0-3,abc", "cannot read filters"), ("999", "out of range"), ("0-20", "at most 8")])
def test_layers_bad_filters(filters, fragment):
    at = app("layers", **FAST, layers="blocks.1", filters=filters)
    assert len(at.error) == 1 and fragment in at.error[0].value


# --------------------------------------------------------------------------- bias audit


@pytest.mark.slow
def test_bias_audit_folder_samples_predictions_and_generation(tmp_path):
    ds = image_folder(tmp_path / "ds")
    at = app("bias_audit", **FAST, folder=str(ds))
    assert at.title[0].value == "Audit a model"
    assert any("classifier's own view" in m for m in markdown(at))
    assert at.selectbox(key="audit.dsclass.0").value == "tench"  # the folder that matches the class
    generate(at)
    assert len(images(at)) >= 3  # 1 generated + 2 samples
    assert len(result_files(tmp_path)) == 1


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


@pytest.mark.slow
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

DEMO = {"audit_methods": "untrained", "audit_seeds": "0", "audit_steps": "2", "audit_prior": "False"}
TABS = ["Audit the whole model", "Your class and samples"]


@pytest.fixture(scope="module")
def planted_cache(tmp_path_factory) -> Path:
    """A DGN_CACHE whose built-in planted model is a tiny one (trained in about a second)."""
    from dgncore.audit import planted as P

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


@pytest.mark.slow
def test_audit_page_leads_with_the_whole_model_and_explains_the_demo(demo_env):
    at = app("bias_audit")
    assert [t.label for t in at.tabs] == TABS
    assert any("A test with a known answer" in c.value and "magenta square stamp" in c.value for c in at.caption)
    assert at.selectbox(key="whole.builtin").value == "planted"
    assert "Sepia tone on 70% of the triangles" in at.selectbox(key="whole.builtin").options
    assert [m.label for m in at.metric][0] == "Other shapes called triangle with the cue"
    assert at.multiselect(key="whole.methods").value == ["pretrained", "untrained", "pixel"] and at.text_input(key="whole.seeds").value == "0,1,2"
    assert at.checkbox(key="whole.prior.demo").value  # the prior fits: no job time limit here
    assert any("No report for these settings yet" in c.value for c in at.caption)
    assert any("uses its own small built-in model" in c.value for c in at.sidebar.caption)
    assert not any("built-in model" in c.value for c in app("layers").sidebar.caption)  # only on the audit page
    at = app("bias_audit", audit_seeds="0,x")
    assert len(at.error) == 1 and "bad seeds" in at.error[0].value
    assert next(b for b in at.button if b.label == "Run the audit").disabled


@pytest.mark.slow
def test_whole_model_audit_ranks_suspects_keeps_every_report_and_reopens_one(demo_env, tmp_path):
    at = run_audit(app("bias_audit", **DEMO))
    reports = list((tmp_path / "results" / "audit").glob("planted-*/report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["methods"] == ["untrained"] and report["seeds"] == [0] and report["steps"] == {"untrained": 2}
    ranking = report["intervention"]["ranking"]
    table = next(m for m in markdown(at) if m.startswith("| rank | class | verdict"))
    assert table.index(f"**{ranking[0]}**") < table.index(f"**{ranking[-1]}**")  # top suspects first
    assert re.search(r":(red|orange|gray)-badge\[", table) and "pasted from real images of the class" in table
    assert {c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")} >= {"audit.suspects", "audit.cue"}, [c.proto.id for c in at.get("plotly_chart")]
    label = "**Random generator (paper, 4.1)**"
    assert any(m.startswith((f":green-badge[PASS] {label}", f":red-badge[FAIL] {label}")) for m in markdown(at))
    assert any("Pass rule, fixed before any run" in c.value for c in at.caption)
    lines = [m for m in markdown(at) if re.match(r":(red|orange|gray)-badge\[[^]]+\] (rank|not tested)", m)]
    assert len(lines) == 5  # one verdict line per class, in its box
    assert len(images(at)) >= 5  # intervention pictures, generated images, samples and exemplars
    assert {d.label for d in at.get("download_button")} >= {"Report page (HTML)", "Report folder (ZIP)"}
    saved = at.selectbox(key="whole.open")
    assert saved.label == "Saved audits (1, newest first)" and len(saved.options) == 2
    # a reload shows the saved report without running anything
    mtime = reports[0].stat().st_mtime
    again = app("bias_audit", **DEMO)
    assert any("kept on disk" in c.value for c in again.caption) and reports[0].stat().st_mtime == mtime
    # other settings: no report for them, but the saved one opens from the list, and the link keeps it
    other = app("bias_audit", **{**DEMO, "audit_steps": "3"})
    assert any("No report for these settings yet" in c.value for c in other.caption)
    other.selectbox(key="whole.open").select(reports[0].parent.name).run()
    assert not other.exception and any(m.startswith("| rank | class | verdict") for m in markdown(other))
    assert other.query_params["audit_open"] == reports[0].parent.name
    # both tabs with their results at once: pictures of the per-class tab, the report of the first
    both = generate(app("bias_audit", **DEMO, **FAST))
    assert {d.label for d in both.get("download_button")} >= {"Report folder (ZIP)", "Download all as ZIP (1 picture, with their settings and scores)"}


def test_audit_progress_says_the_step_and_the_seconds_left_in_it():
    from types import SimpleNamespace

    from dashboard.audit_panel import progress_text

    s = SimpleNamespace(state="running", position=None, started=100.0, step=1, total=4, phase="generate", phase_no=3, phases=5,
                        stage="untrained seed 1: step 40/200", left_s=52.4)
    text, done = progress_text(s, now=112.0)
    assert text.startswith("Audit, step 3 of 5: drawing what the classifier imagines")
    assert "untrained seed 1: step 40/200" in text and "about 52 s left in this step" in text and "12 s so far" in text
    assert done == 0.25
    text, done = progress_text(SimpleNamespace(state="queued", position=2), now=0)
    assert text == "Audit: waiting in the queue (1 job ahead)" and done == 0


@pytest.mark.slow
def test_hosted_audit_page_reopens_saved_audits_without_server_paths(demo_env, monkeypatch, tmp_path):
    from dgncore.audit.pipeline import audit

    audit("planted", tmp_path / "results" / "audit" / "planted-earlier", methods=["untrained"], seeds=[0], steps=2)
    monkeypatch.setenv("DGN_HOSTED", "1")
    monkeypatch.setenv("DGN_JOB_TIMEOUT", "600")
    fresh = app("bias_audit")
    assert not fresh.checkbox(key="whole.prior.demo").value  # 600 s leave no room for the prior: off at first, and said
    assert "stops a job after 600 s" in fresh.checkbox(key="whole.prior.demo").help
    at = app("bias_audit", **DEMO)
    assert not at.radio and at.selectbox(key="whole.builtin").value == "planted"  # no folders, no uploads: the demo only
    at.selectbox(key="whole.open").select("planted-earlier").run()
    assert not at.exception and not at.error and any(m.startswith("| rank | class | verdict") for m in markdown(at))
    shown = [c.value for c in at.caption] + markdown(at) + [o for s in at.selectbox for o in s.options]
    assert any("planted on its own pictures" in o for o in at.selectbox(key="whole.open").options)
    assert not [t for t in shown if str(tmp_path) in t or "/tmp" in t]  # no server paths for visitors


@pytest.mark.slow
def test_the_ready_made_audit_opens_from_disk_without_photos(demo_env, monkeypatch, tmp_path):
    from dgncore.audit.pipeline import audit

    examples = tmp_path / "examples"
    audit("planted", examples / "audit-lite0", methods=["untrained"], seeds=[0], steps=2, photos=False, image_format="webp")
    (examples / "audit-lite0" / "report.html").unlink()  # shipped without its page: the download draws it
    monkeypatch.setenv("DGN_EXAMPLES", str(examples))
    before = sorted((examples / "audit-lite0").rglob("*"))
    at = app("bias_audit", audit_of="EfficientNet-Lite0 on ImageNet photos (ready-made)")
    assert not at.exception and not at.error
    assert any("A real model, audited once" in c.value for c in at.caption)
    assert any(m.startswith("| rank | class | verdict") for m in markdown(at))
    assert any("This report holds no photo" in c.value for c in at.caption)
    assert not any(b.label == "Run the audit" for b in at.button)  # nothing to run: it is shown from disk
    assert {d.label for d in at.get("download_button")} >= {"Report page (HTML)", "Report folder (ZIP)"}
    assert sorted((examples / "audit-lite0").rglob("*")) == before  # nothing written there (the app's code is read-only when hosted)
    monkeypatch.setenv("DGN_EXAMPLES", str(tmp_path / "no-examples"))
    assert all("ready-made" not in o for r in app("bias_audit").radio for o in r.options)


def test_the_shipped_audit_of_lite0_holds_no_photo():
    """What ships in dashboard/examples/audit-lite0: a report made without photos, the images
    it refers to (generated ones, WebP) and nothing else, no path of the machine it was made on."""
    folder = ROOT / "dashboard" / "examples" / "audit-lite0"
    report = json.loads((folder / "report.json").read_text())
    from dgncore.audit.run import report_files

    assert report["photos"] is False and "index" not in report
    assert not re.findall(r'"(?:/|[A-Za-z]:\\\\)[^"]*"', (folder / "report.json").read_text())  # no path of the machine it was made on
    assert all(not d.get("samples") and "exemplars" not in d for d in report["dataset_classes"].values())
    refs = set(report_files(report))
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == refs | {"report.json"} and all(r.endswith(".webp") for r in refs)
    assert 50 <= len(report["classes"]) <= 100 and report["intervention"]["ranking"]


@pytest.mark.slow
def test_audit_of_your_own_model_on_your_folder(tmp_path):
    ds = image_folder(tmp_path / "ds")
    at = app("bias_audit", audit_folder=str(ds), audit_of="The sidebar's model on your images", audit_methods="untrained", audit_seeds="0",
             audit_steps="2", audit_prior="False")
    assert any("2 class folders" in c.value for c in at.caption)
    run_audit(at)
    report = json.loads(next((tmp_path / "results" / "audit").glob("efficientnet_lite0-*/report.json")).read_text())
    assert report["classes"] == ["tench", "goldfish"] and "cue" not in report and "intervention" in report
    assert not at.get("plotly_chart") or all(c.proto.id != "audit.cue" for c in at.get("plotly_chart"))
    assert any(m.startswith("| rank | class | verdict") for m in markdown(at))
    assert any(m.startswith("**tench**") for m in markdown(at))


@pytest.mark.slow
def test_exemplars_beside_the_generated_images(tmp_path):
    ds = image_folder(tmp_path / "ds")
    at = app("bias_audit", **FAST, folder=str(ds))
    assert any("Real images that score highest for **tench**" in m for m in markdown(at))
    at = app("layers", **FAST, layers="blocks.1", filters="0", folder=str(ds))
    assert any("Real images that score highest for **blocks.1 filter 0**" in m for m in markdown(at))
    assert len(images(at)) == 2  # 4 images: a row of the top 2 and one of the other 2
    assert [len(i.proto.imgs) for i in images(at)] == [2, 2]


# --------------------------------------------------------------------------- gallery


@pytest.mark.slow
def test_gallery_lists_filters_and_opens_results(tmp_path):
    from dashboard import runner

    assert runner.start_run([runner.Request("efficientnet_lite0", ("class:tench", "class:goldfish"), "pixel", 2, (0,), 64)]).wait(120)
    at = app("gallery")
    assert len(images(at)) == 2
    assert any(c.value.startswith("2 of 2 pictures") for c in at.caption)
    at.text_input(key="gallery.q").set_value("gold").run()
    assert len(images(at)) == 1 and at.query_params["q"] == "gold"
    next(b for b in at.button if b.label == "Open").click().run()
    assert not at.exception
    assert at.query_params["open"].endswith("1_goldfish.json")
    assert at.get("json") and at.subheader[0].value == "goldfish"
    assert any("second network" in m for m in markdown(at))


def test_gallery_shows_the_examples_beside_what_was_made(tmp_path, monkeypatch):
    from dashboard.showcase import EXAMPLES

    monkeypatch.setenv("DGN_EXAMPLES", str(EXAMPLES))
    at = app("gallery")
    assert images(at) and any("ready-made examples" in c.value for c in at.caption)
    at.multiselect(key="gallery.from").set_value(["ready-made examples"]).run()
    assert images(at)


def test_gallery_empty_and_bad_folder(tmp_path):
    at = app("gallery")
    assert any("No pictures" in i.value for i in at.info)
    at = app("gallery", root=str(tmp_path / "nope"))
    assert len(at.error) == 1 and "does not exist" in at.error[0].value


# --------------------------------------------------------------------------- hosted mode


def test_hosted_mode_lands_on_examples_without_uploads_folders_or_server_paths(monkeypatch, tmp_path):
    from dashboard.showcase import EXAMPLES

    monkeypatch.setenv("DGN_HOSTED", "1")
    monkeypatch.setenv("DGN_EXAMPLES", str(EXAMPLES))
    at = app()
    assert at.title[0].value == "DGN Explorer" and len(images(at)) == 6
    assert at.sidebar.selectbox[0].options == ["efficientnet_lite0", "efficientnet_lite2"]
    assert not any(str(tmp_path) in c.value for c in at.sidebar.caption)
    at.switch_page("views/gallery.py").run()
    assert images(at) and not any(t.label == "Results folder" for t in at.text_input)
    assert not any(str(tmp_path) in c.value for c in at.caption)
    at.switch_page("views/bias_audit.py").run()
    assert not at.exception and at.radio[0].options == ["A built-in model with a planted shortcut (the demo)",
                                                        "EfficientNet-Lite0 on ImageNet photos (ready-made)"]  # no folder on the server, no uploads
    at.radio[0].set_value("EfficientNet-Lite0 on ImageNet photos (ready-made)").run()
    assert not at.exception and not at.error and any(m.startswith("| rank | class | verdict") for m in markdown(at))
    assert not any("saved in" in c.value for c in at.caption)  # no server path
    # every page opens on something to do, within the hosted limits; See a class on an example
    for view in ("single_class", "compound", "layers", "bias_audit", "gallery"):
        at.switch_page(f"views/{view}.py").run()
        assert not at.exception and not at.error, (view, [e.value for e in at.error])
    at.switch_page("views/single_class.py").run()
    assert images(at) and any("ready-made example" in c.value for c in at.caption)
    at.switch_page("views/layers.py").run()
    assert at.text_input(key="layers.filters").value == "0"  # 7 stages x 1 filter: within the 8 pictures a run
    assert len(images(at)) == 7  # ... and the page opens on the shipped atlas, nothing computed


def test_bad_server_setting_is_one_error(monkeypatch):
    monkeypatch.setenv("DGN_MAX_STEPS", "lots")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and "DGN_MAX_STEPS" in at.error[0].value


# --------------------------------------------------------------------------- the runner


@pytest.mark.slow
def test_a_stopped_run_keeps_what_it_has(tmp_path):
    import time

    from dashboard import runner

    # a filter target never stops early (it has no probability), so only Stop ends it
    run = runner.start_run([runner.Request("efficientnet_lite0", ("filter:blocks.1:0",), "pixel", 2000, (0,), 32)])
    deadline = time.time() + 60
    while run.poll().stage() != "running" and time.time() < deadline:
        time.sleep(0.05)
    assert run.preview and run.seconds_left() > 0
    run.stop()
    assert run.wait(60) and run.error is None and run.bug is None
    rec = run.records[0][0]
    assert rec["cancelled"] and rec["steps"] < 2000 and Path(rec["_file"]).is_file()


def test_runner_user_errors(tmp_path):
    from dashboard import runner
    from dgncore.errors import InputError

    def start(texts, method, steps):
        return runner.start_run([runner.Request("efficientnet_lite0", tuple(texts), method, steps)])

    with pytest.raises(InputError, match="steps must be between"):
        start(["class:tench"], "pixel", 0)
    with pytest.raises(InputError, match="nothing to generate"):
        start(["  "], "pixel", 2)
    with pytest.raises(InputError, match="unknown method"):
        start(["class:tench"], "magic", 2)
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_the_start_page_and_the_gallery_draw_without_torch(tmp_path):
    """They show saved files: a fresh server answers them without importing torch or
    loading the classifier (a fresh process, since this one has torch already)."""
    script = f"""
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({APP!r}, default_timeout=120)
at.run()
assert not at.exception, at.exception
shown = len(at.get("image"))
at.switch_page("views/gallery.py").run()
assert not at.exception, at.exception
print(shown, "torch" in sys.modules)
"""
    env = dict(os.environ, DGN_RESULTS=str(tmp_path / "results"))
    env.pop("DGN_EXAMPLES", None)  # the shipped examples
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    shown, torch_loaded = out.stdout.split()[-2:]
    assert int(shown) >= 3 and torch_loaded == "False"
