"""The dashboard's plain words and time estimates, without Streamlit."""

from __future__ import annotations

import time

import pytest

from dashboard import eta, words


def test_results_are_said_as_a_person_would():
    rec = {"target_label": "tench", "p_target": 0.996, "rank": 1}
    assert words.result_sentence(rec) == "99% tench, its top guess"
    assert words.result_sentence({"target_label": "tench", "p_target": 0.004, "rank": 23}) == "0.4% tench, its 23rd guess"
    assert words.result_sentence({"target": "filter:blocks.3:5", "p_target": None, "activation": 2.314, "percentile": 94.0}) == (
        "fires at 2.31, more than 94% of random images")
    assert [words.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 102, 111)] == ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "102nd", "111th"]
    assert [words.percent(p) for p in (1.0, 0.9999, 0.62, 0.0004)] == ["100%", "99%", "62%", "<0.1%"]


def test_the_second_opinion_in_words():
    rec = {"target_label": "tench", "second_opinion": {"model": "efficientnet_lite2", "p_target": 0.62, "rank": 1}}
    assert words.second_opinion_sentence(rec) == "a second network agrees: 62% tench"
    rec["second_opinion"] = {"model": "efficientnet_lite2", "p_target": 0.08, "rank": 3}
    assert words.second_opinion_sentence(rec) == "a second network half agrees: 8% tench, its 3rd guess"
    rec["second_opinion"] = {"model": "efficientnet_lite2", "p_target": 0.0002, "rank": 412}
    assert words.second_opinion_sentence(rec) == "a second network is not convinced: <0.1% tench, its 412th guess"
    assert words.second_opinion_sentence({"target_label": "tench"}) is None


def test_the_nearest_real_photos_in_words():
    op = {"model": "efficientnet_lite2", "p_target": 0.9, "rank": 1, "nearest": ["beacon", "breakwater", "dam"], "photo_rank": 1}
    rec = {"target_label": "beacon", "target_kind": "class", "p_target": 0.99, "second_opinion": op}
    assert words.nearest_sentence(rec) == "looks most like real photos of: beacon, breakwater, dam"
    assert words.compact_verdict(rec) == "99% sure · looks like photos of beacon, breakwater"
    rec["second_opinion"] = dict(op, nearest=["jigsaw puzzle", "doormat", "quilt"], photo_rank=212)
    assert words.nearest_sentence(rec) == "looks most like real photos of: jigsaw puzzle, doormat, quilt (the real beacon photo comes 212th)"
    rec["second_opinion"] = dict(op, photo_rank=None)
    assert words.nearest_sentence(rec).endswith("(there is no real beacon photo to compare with)")
    assert "random images" in words.nearest_sentence({"target_kind": "filter", "activation": 2.0})
    assert "no real photos" in words.nearest_sentence({"target_kind": "class", "p_target": 0.5})  # another class list
    assert words.nearest_sentence({"target_kind": "class", "p_target": 0.5, "second_opinion": {"p_target": 0.4, "rank": 2}}) is None  # made before


def test_times_are_in_seconds():
    assert [words.seconds_text(s) for s in (0.2, 8.4, 59, 80, 725, 4000)] == [
        "about 1 s", "about 8 s", "about 59 s", "about 1 min 20 s", "about 12 min", "about 1 h 6 min"]


@pytest.mark.parametrize("name", ["<img src=x onerror=alert(1)>", "**loud**", "[x](http://e.com)", "- item", "1. one", "a_b`c`", "#h"])
def test_user_names_cannot_make_markup(name):
    out = words.md(name)
    assert out != name and "\n" not in out


def test_estimates_come_from_measured_step_rates(monkeypatch):
    rates = eta.StepRates()
    monkeypatch.setattr(eta, "RATES", rates)
    hp = {"generator": {"out_size": 224}}
    oh = eta.DEFAULT_JOB_OVERHEAD_S  # what a job costs beside its steps, until measured
    before = eta.request_seconds("m", "pixel", 100, None, 1, 1)
    assert before == pytest.approx(100 * eta.DEFAULT_SECONDS_PER_STEP + oh)
    rates.observe({"model": "m", "method": "pixel", "steps": 50, "seconds": 5.0, "hyperparameters": hp}, prior=True)
    assert eta.request_seconds("m", "pixel", 100, None, 1, 1) == pytest.approx(10.0 + oh)  # the examples' rate
    rates.observe({"model": "m", "method": "pixel", "steps": 10, "seconds": 2.0, "hyperparameters": hp})
    assert eta.request_seconds("m", "pixel", 100, None, 2, 3) == pytest.approx((0.2 * 100 * 2 + oh) * 3)  # this server's own
    assert eta.request_seconds("m", "pixel", 100, 112, 1, 1) == pytest.approx(0.2 * 100 * 0.25 + oh)  # another size, scaled
    rates.observe_job(3.5, steps_seconds=2.0)  # this server's jobs: 1.5 s beside their steps
    assert eta.request_seconds("m", "pixel", 100, None, 1, 2) == pytest.approx((0.2 * 100 + 1.5) * 2)
    rates.observe({"model": "m", "method": "pixel", "steps": 10, "seconds": 9.0, "hyperparameters": hp, "cached": True})
    assert rates.seconds_per_step("m", "pixel", 224) == pytest.approx(0.2)  # a result from disk took no time
    assert eta.typical_seconds("m", "pixel", 100.0) is None  # no record said how early it stopped
    rates.observe({"model": "m", "method": "pixel", "steps": 25, "steps_max": 100, "seconds": 5.0, "hyperparameters": hp})
    assert eta.typical_seconds("m", "pixel", 100.0) == pytest.approx(25.0)
    assert eta.queue_seconds(3, own_job=7.0) == 3 * 3.5
    rates.observe_job(4.5)
    assert eta.queue_seconds(3, own_job=7.0) == 12.0


def test_a_runs_time_left_follows_its_measured_steps():
    from dashboard.runner import LiveRun, Request, SeedJob
    from dgncore.serving.specs import JobSpec
    from dgncore.serving.status import JobStatus

    req = Request("m", ("class:0",), "pixel", 100, (0, 1), 64)
    run = LiveRun([req], [SeedJob(0, JobSpec(("class:0",), seed=s), f"job{s}") for s in (0, 1)], queue=None, session_id="me")
    assert run.stage() == "queued"
    run.jobs[0].status = JobStatus("job0", "running", step=0, total=0)
    assert run.stage() == "starting"
    now = time.time()
    run.jobs[0].status = JobStatus("job0", "running", step=50, total=100, preview_no=3)
    run._rate_of, run._preview_of, run._first, run._last = 0, (0, 3), (now - 8.0, 10), (now, 50)  # 8 s from step 10 to 50: 0.2 s a step
    assert run.stage() == "running" and run.fraction() == pytest.approx(0.25)
    per_seed = req.seconds() / 2
    assert run.seconds_left() == pytest.approx(0.2 * 50 + per_seed, rel=0.05)
    assert run.where() == (req, 0, 2)
    run.jobs[0].status = JobStatus("job0", "done")
    run.jobs[1].status = JobStatus("job1", "queued", position=2)
    assert run.stage() == "queued" and run.position == 2 and run.where() == (req, 1, 2)
    assert run.seconds_left() == pytest.approx(per_seed + eta.queue_seconds(2, per_seed))


def test_a_run_that_does_not_move_says_the_server_is_busy():
    from dashboard import flow
    from dashboard.runner import LiveRun, Request, SeedJob
    from dgncore.serving.specs import JobSpec
    from dgncore.serving.status import JobStatus

    req = Request("m", ("class:0",), "pixel", 100, (0,), 64, label="tench")
    run = LiveRun([req], [SeedJob(0, JobSpec(("class:0",)), "job0", JobStatus("job0", "running"))], queue=None, session_id="me")
    assert not run.slower_than_expected()
    run._moved -= 2 * eta.RATES.job_overhead() + 11  # no step since the job started, twice as long as a start takes
    assert run.slower_than_expected()
    assert flow.stage_text(run).endswith("slower than expected: the server is busy")
    run.jobs[0].status = JobStatus("job0", "queued", position=1)  # waiting in the queue is said as such
    assert not run.slower_than_expected() and "busy" not in flow.stage_text(run)


def test_colours_come_from_the_theme_and_no_page_writes_raw_html():
    import re
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    theme = tomllib.loads((root / ".streamlit" / "config.toml").read_text())["theme"]
    assert theme["primaryColor"] and len(theme["chartCategoricalColors"]) >= 6
    for path in sorted((root / "dashboard").rglob("*.py")):
        text = path.read_text()
        assert "unsafe_allow_html" not in text, path  # user names reach pages only through words.md
        assert "cache_resource" not in text, path  # the classifier is cached once, by dgncore (pages and queue alike)
        if path.name != "audit_report.py":  # the audit's cue chart (issue 15's) still names its colours
            assert not re.findall(r"#[0-9a-fA-F]{6}\b", text), path


def test_audit_words_rates_verdicts_and_steps():
    assert words.flip_rate({"n": 64, "rate": 0.5714, "ci": [0.48, 0.65]}) == "57% (48%–65%)"
    assert words.flip_rate({"n": 30, "rate": 0.0, "ci": [0.0, 0.11]}) == "0% (0%–11%)"  # a measured zero, not "<0.1%"
    assert words.flip_rate(None) == "-" and words.flip_rate({"n": 0, "rate": None, "ci": [None, None]}) == "-"
    assert words.verdict_badge("confirmed shortcut") == ":red-badge[confirmed shortcut]"
    assert words.verdict_badge("suspected").startswith(":orange-badge[") and words.verdict_badge("none").startswith(":gray-badge[")
    assert words.audit_phase("intervention", 4, 5).startswith("step 4 of 5: testing each class")
    assert words.audit_phase("", 0, 0) == "starting"


def test_the_time_note_promises_an_early_stop_only_where_the_method_has_one(monkeypatch):
    from dashboard import flow
    from dashboard.runner import Request

    monkeypatch.setattr(eta, "typical_seconds", lambda model, method, at_most: at_most / 4)
    early = flow.time_note([Request("m", ("class:0",), "untrained")], 40.0)
    assert "stops once the classifier is sure" in early and "Usually" in early
    for method in ("natural", "pretrained"):  # these run all their steps
        full = flow.time_note([Request("m", ("class:0",), method)], 40.0)
        assert full.startswith("Takes about") and "sure" not in full
