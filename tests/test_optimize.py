import threading

import pytest
import torch

from dgncore.data import load_image
from dgncore.drawing.objectives import parse_target
from dgncore.drawing.optimize import optimize
from dgncore.drawing.registry import make_preset
from dgncore.errors import InputError
from dgncore.results import score_image
from dgncore.runs import class_targets, draw_classes, generate, parse_shard


def _tiny(method="pixel", steps=30, **kw):
    if method == "untrained":
        kw.setdefault("width", 0.0625)
    return make_preset(method, steps=steps, size=32, **kw)


def test_an_early_stop_switches_off_explicitly(tiny_classifier):
    from dgncore.__main__ import _preset as cli_preset
    from dgncore.__main__ import build_parser
    from dgncore.drawing.registry import get_preset

    base = get_preset("pixel")
    assert base.early_stop == 0.99
    assert base.replace(early_stop=None).early_stop is None  # None is "off", never "keep"
    assert make_preset("pixel", early_stop=None).early_stop is None
    assert make_preset("pixel", early_stop=0).early_stop is None  # the CLI's and the queue's "0 = never"
    assert make_preset("pixel", early_stop=0.5).early_stop == 0.5
    assert make_preset("pixel", steps=None).early_stop == 0.99  # an option not given keeps the preset's
    parse = build_parser().parse_args
    assert cli_preset(parse(["generate", "--target", "class:tench", "--method", "pixel", "--early-stop", "0"])).early_stop is None
    assert cli_preset(parse(["generate", "--target", "class:tench", "--method", "pixel"])).early_stop == 0.99
    # switched off, every step runs although the same run with a stop ends early
    t = parse_target("class:hen", tiny_classifier)
    stopped = optimize(tiny_classifier, [t], _tiny(steps=40, early_stop=0.3), seed=0)
    run = optimize(tiny_classifier, [t], _tiny(steps=40).replace(early_stop=None), seed=0)
    assert stopped.steps[0] < 40 and run.steps == [40] and len(run.activation) == 40


def test_pixel_run_raises_the_target(tiny_classifier):
    t = parse_target("class:hen", tiny_classifier)
    run = optimize(tiny_classifier, [t], _tiny(early_stop=None), seed=0)
    assert run.activation[-1][0] > run.activation[0][0] + 1.0
    assert run.images.shape == (1, 3, 32, 32)
    assert torch.equal(run.images, (run.images * 255).round() / 255)  # already 8-bit


@pytest.mark.slow
def test_untrained_batch_of_targets(tiny_classifier):
    targets = [parse_target(x, tiny_classifier) for x in ["class:tench", "class:hen", "filter:features.2:3"]]
    run = optimize(tiny_classifier, targets, _tiny("untrained", steps=20, early_stop=None), seed=1)
    assert run.images.shape[0] == 3 and len(run.activation) == 20
    first, last = run.activation[0], run.activation[-1]
    assert sum(l > f for f, l in zip(first, last)) >= 2


def test_progress_cancel_and_early_stop(tiny_classifier):
    t = parse_target("class:tench", tiny_classifier)
    seen = []
    stop = threading.Event()

    def progress(p):
        seen.append(p.step)
        if p.step >= 20:
            stop.set()

    run = optimize(tiny_classifier, [t], _tiny(steps=200, early_stop=None), progress=progress, cancel=stop)
    assert run.cancelled and seen[:2] == [10, 20] and run.steps[0] <= 21
    quick = optimize(tiny_classifier, [t], _tiny(steps=200, early_stop=0.5))
    assert quick.steps[0] < 200 and quick.checks[-1][1][0] >= 0.5


def test_generate_scores_the_saved_png_and_reuses_it(tiny_classifier, tmp_path):
    targets = [parse_target("class:ostrich", tiny_classifier), parse_target("filter:features.0:2", tiny_classifier)]
    preset = _tiny(steps=5)
    recs = generate(tiny_classifier, targets, preset, tmp_path, seed=3)
    for rec, t in zip(recs, targets):
        png = tmp_path / rec["png"]
        again = score_image(tiny_classifier, load_image(png), t)
        assert again["activation"] == rec["activation"]
        assert (tmp_path / png.with_suffix(".json").name).is_file()
        assert {"target", "method", "p_target", "rank", "seconds", "top5", "start_activation"} <= set(rec)
    assert recs[0]["rank"] >= 1 and 0 <= recs[0]["p_target"] <= 1
    assert recs[1]["p_target"] is None and 0 <= recs[1]["percentile"] <= 100
    before = (tmp_path / recs[0]["png"]).stat().st_mtime_ns
    again = generate(tiny_classifier, targets, preset, tmp_path, seed=3)
    assert all(r["cached"] for r in again)
    assert (tmp_path / recs[0]["png"]).stat().st_mtime_ns == before
    other_seed = generate(tiny_classifier, targets[:1], preset, tmp_path, seed=4)
    assert not other_seed[0]["cached"]


def test_gallery_is_resumable_and_shardable(tiny_classifier, tmp_path):
    preset = _tiny(steps=2)
    targets = class_targets(tiny_classifier, "0-4,hen")
    assert [t.units[0] for t in targets] == [0, 1, 2, 3, 4, 8]
    a = draw_classes(tiny_classifier, targets, preset, tmp_path, batch=2, shard=parse_shard("1/2"))
    b = draw_classes(tiny_classifier, targets, preset, tmp_path, batch=2, shard=parse_shard("2/2"))
    assert len(a) == 3 and len(b) == 3
    assert draw_classes(tiny_classifier, targets, preset, tmp_path, batch=2) == []  # all done: nothing recomputed
    import json

    index = json.loads((tmp_path / "index.json").read_text())
    assert index["count"] == 6
    with pytest.raises(InputError):
        parse_shard("3/2")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pixel", "untrained", "fourier"])
def test_finished_targets_leave_the_batch(tiny_classifier, method):
    """A target that reaches early stop stops costing compute: later passes carry only
    the unfinished rows, and the unfinished target goes on as if it were alone."""
    # p >= 1e-6 is met at the first check; a filter has no probability and never stops
    targets = [parse_target("class:hen", tiny_classifier), parse_target("filter:features.2:3", tiny_classifier)]
    sizes: list[int] = []
    tiny_classifier.fast_model  # built (with a probe pass) before counting  # noqa: B018
    preprocess = tiny_classifier.preprocess
    tiny_classifier.preprocess = lambda x: (sizes.append(x.shape[0]), preprocess(x))[1]
    run = optimize(tiny_classifier, targets, _tiny(method, steps=12, early_stop=1e-6), seed=0, check_every=4)
    assert run.steps == [4, 12]
    assert sizes[:5] == [2] * 5  # 4 training passes and the first check
    assert sizes[5:] == [1] * 10  # 8 training passes and 2 checks
    assert len(run.activation) == 12 and run.activation[4][0] == run.activation[-1][0]  # held once finished
    assert run.checks[-1][1][0] == run.checks[0][1][0]  # the finished target's score is its saved image's
    tiny_classifier.preprocess = preprocess
    if method == "fourier":  # its random transforms are drawn per row: fewer rows, other draws
        return
    kept = optimize(tiny_classifier, targets, _tiny(method, steps=12, early_stop=None), seed=0, check_every=4)
    # the first pass after the drop sees the same parameters (later steps may drift apart
    # at float precision: the grouped G's convolutions change shape)
    assert run.activation[4][1] == pytest.approx(kept.activation[4][1], rel=1e-4)
    if method == "pixel":
        assert torch.equal(run.images[1], kept.images[1])


def test_keep_rows_cuts_a_grouped_generator_and_its_optimizer_state():
    from dgncore.drawing.optimize import _optimizer, build_source

    preset = _tiny("untrained", steps=5)
    torch.manual_seed(0)
    source = build_source(preset, 3, torch.device("cpu"))
    opt = _optimizer(preset, [p for p in source.parameters() if p.requires_grad])
    for _ in range(2):
        opt.zero_grad()
        source().sum().backward()
        opt.step()
    with torch.no_grad():
        before = source()
    source.keep_rows(torch.tensor([0, 2]), opt)
    with torch.no_grad():
        after = source()
    assert source.n_rows == 2 and source.generator.n_models == 2 and after.shape == (2, 3, 32, 32)
    assert torch.allclose(after, before[[0, 2]], atol=1e-5)
    assert all(s["exp_avg"].shape == p.shape for p, s in opt.state.items())
    opt.zero_grad()
    source().sum().backward()  # the optimiser steps the cut-down parameters
    opt.step()


def test_several_views_per_step_reach_the_classifier(tiny_classifier):
    """views=V: every training pass shows the classifier V transformed copies of each row;
    the checks score the image itself, once."""
    t = parse_target("class:hen", tiny_classifier)
    sizes: list[int] = []
    tiny_classifier.fast_model  # built (with a probe pass) before counting  # noqa: B018
    preprocess = tiny_classifier.preprocess
    tiny_classifier.preprocess = lambda x: (sizes.append(x.shape[0]), preprocess(x))[1]
    try:
        run = optimize(tiny_classifier, [t, t], _tiny("fourier", steps=4, early_stop=None, views=3), seed=0, check_every=4)
    finally:
        tiny_classifier.preprocess = preprocess
    assert sizes == [6] * 4 + [2]
    assert run.images.shape[0] == 2 and len(run.activation) == 4


def test_cosine_schedule_brings_the_step_size_down_to_zero(tiny_classifier, monkeypatch):
    """lr_schedule="cosine": the learning rate starts at the preset's and has reached 0 by
    the last step; "constant" keeps it."""
    seen: list[float] = []
    step = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    t = parse_target("class:hen", tiny_classifier)
    optimize(tiny_classifier, [t], _tiny("fourier", steps=8, early_stop=None, lr_schedule="cosine"), seed=0)
    assert seen[0] == pytest.approx(0.05) and seen == sorted(seen, reverse=True) and seen[-1] < 0.05 * 0.05
    seen.clear()
    optimize(tiny_classifier, [t], _tiny("fourier", steps=8, early_stop=None), seed=0)
    assert seen == [pytest.approx(0.05)] * 8


@pytest.mark.parametrize("changes, fragment", [
    ({"views": 0}, "views must be a whole number"),
    ({"views": 2.0}, "views must be a whole number"),
    ({"views": 9}, "between 1 and 8"),
    ({"views": 2, "transforms": False}, "need transforms on"),
    ({"lr_schedule": "linear"}, "lr_schedule must be constant or cosine"),
])
def test_bad_views_and_schedules_are_input_errors(changes, fragment):
    with pytest.raises(InputError, match=fragment):
        make_preset("fourier").replace(**changes)


def test_views_and_schedule_from_the_command_line():
    from dgncore.__main__ import _preset as cli_preset
    from dgncore.__main__ import build_parser

    args = build_parser().parse_args(["generate", "--target", "class:tench", "--views", "2", "--lr-schedule", "cosine"])
    preset = cli_preset(args)
    assert (preset.method, preset.views, preset.lr_schedule) == ("natural", 2, "cosine")


def test_a_result_made_before_a_setting_existed_matches_its_default(tiny_classifier, tmp_path):
    """A saved result whose record lacks a setting added later was made with its default:
    it is still reused, and a request for another value is not."""
    import json

    from dgncore.runs import cached_result

    t = parse_target("class:hen", tiny_classifier)
    preset = _tiny(steps=3, early_stop=None)
    (rec,) = generate(tiny_classifier, [t], preset, tmp_path, seed=0, stems=["hen"])
    path = tmp_path / "hen.json"
    data = json.loads(path.read_text())
    del data["hyperparameters"]["views"], data["hyperparameters"]["lr_schedule"]
    path.write_text(json.dumps(data))
    assert cached_result(tmp_path, "hen", rec["model"], t, preset, 0) is not None
    assert cached_result(tmp_path, "hen", rec["model"], t, preset.replace(lr_schedule="cosine"), 0) is None


def test_too_many_images_a_step_is_an_input_error(tiny_classifier):
    """targets x restarts x views bounds the classifier's batch, checked before any work."""
    t = parse_target("class:hen", tiny_classifier)
    with pytest.raises(InputError, match="images a step"):
        optimize(tiny_classifier, [t] * 64, _tiny("fourier", restarts=16, views=2), seed=0)
