"""The job queue: FIFO order, per-session limits, cancel, jobs that outlive their session,
hosted limits; the same through RQ on a real redis-server with `python -m dgncore worker`."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tiny_torchscript import save_tiny_torchscript

from dgncore.data import open_image
from dgncore.errors import InputError
from dgncore.limits import Limits
from dgncore.result_files import read_result
from dgncore.serving.execute import execute
from dgncore.serving.local_queue import LocalQueue
from dgncore.serving.rq_queue import RedisQueue
from dgncore.serving.specs import AuditSpec, JobSpec, spec_from_dict
from dgncore.serving.worker import get_queue, reset_queue

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(save_tiny_torchscript(tmp_path_factory.mktemp("model")))


@pytest.fixture
def settings(tmp_path) -> Limits:
    return Limits(results_dir=tmp_path / "results", max_queued_per_session=3)


@pytest.fixture
def queue(settings):
    q = LocalQueue(settings)
    yield q
    q.close()


def small(model: str, *targets: str, **kw) -> JobSpec:
    """A job that takes a few hundredths of a second on the tiny model."""
    kw.setdefault("method", "pixel")
    kw.setdefault("steps", 2)
    kw.setdefault("size", 32)
    return JobSpec(targets or ("class:tench",), model=model, **kw)


def long(model: str, **kw) -> JobSpec:
    """A job that runs until cancelled (no early stop, the most steps allowed)."""
    return small(model, steps=20_000, overrides={"early_stop": 0}, **kw)


def wait_for(pred, timeout: float = 30.0, poll: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("timed out waiting")


def assert_results_load(st) -> None:
    assert st.records, st
    for path in st.files():
        assert path.is_file(), path
    for rec in st.records:
        open_image(st.out_dir / rec["png"])
        assert read_result(st.out_dir / rec["png"].replace(".png", ".json"))["target"] == rec["target"]


# --------------------------------------------------------------------------- in-process


def test_jobs_run_one_at_a_time_in_submission_order(queue, tiny_model):
    blocker = queue.submit(long(tiny_model, out_dir="blocker"), "session-9")
    wait_for(lambda: queue.status(blocker).state == "running")
    ids = [queue.submit(small(tiny_model, seed=i, out_dir=f"j{i}"), f"session-{i % 2}") for i in range(4)]
    assert [queue.status(i).position for i in ids] == [1, 2, 3, 4]
    assert queue.status(blocker).position is None
    queue.cancel(blocker)
    done = [queue.wait(i, timeout=60) for i in ids]
    assert [s.state for s in done] == ["done"] * 4, [s.error for s in done]
    assert sorted(done, key=lambda s: s.started) == done  # FIFO
    for a, b in zip(done, done[1:]):
        assert a.finished <= b.started  # one worker: never two at once
    for s in done:
        assert s.step == s.total == 2 and s.queue_wait is not None and s.position is None
        assert_results_load(s)


def test_per_session_limit(queue, tiny_model):
    blocker = queue.submit(long(tiny_model, out_dir="blocker"), "other")
    mine = [queue.submit(small(tiny_model, seed=i, out_dir=f"m{i}"), "me") for i in range(3)]
    with pytest.raises(InputError, match="limit is 3"):
        queue.submit(small(tiny_model, seed=9), "me")
    assert queue.session_jobs("me") == mine
    queue.submit(small(tiny_model, seed=9, out_dir="o"), "someone else")  # others are not blocked
    assert queue.cancel(mine[0], session_id="me")
    queue.submit(small(tiny_model, seed=10, out_dir="m10"), "me")  # a slot is free again
    queue.cancel(blocker)


def test_whole_queue_limit(settings, tiny_model):
    q = LocalQueue(dataclasses.replace(settings, max_queue=2))
    try:
        blocker = q.submit(long(tiny_model), "a")
        wait_for(lambda: q.status(blocker).state == "running")
        q.submit(small(tiny_model, seed=1), "b")
        q.submit(small(tiny_model, seed=2), "c")
        with pytest.raises(InputError, match="busy"):
            q.submit(small(tiny_model, seed=3), "d")
        q.cancel(blocker)
    finally:
        q.close()


def test_cancel_queued_and_running_jobs(queue, tiny_model):
    running = queue.submit(long(tiny_model, out_dir="long"), "a")
    queued = queue.submit(small(tiny_model, out_dir="queued"), "a")
    st = wait_for(lambda: (s := queue.status(running)).step >= 10 and s)
    assert st.state == "running" and st.total == 20_000 and len(st.probs) == 1
    assert st.preview and open_image(st.preview[0]).size == (32, 32)
    # what the dashboard's progress widgets draw: the history, and a preview counter that tells a poller when to fetch the PNGs
    assert len(st.activation) == st.step and st.checks and st.preview_no >= 1
    assert queue.status(running, preview=False).preview is None
    with pytest.raises(InputError, match="another session"):
        queue.cancel(running, session_id="b")
    assert queue.cancel(queued)
    assert queue.status(queued).state == "cancelled"  # at once, without running
    assert queue.cancel(running)
    st = queue.wait(running, timeout=30)
    assert st.state == "cancelled" and st.step < 20_000
    assert not queue.cancel(running)  # already finished
    assert not (queue.settings.results_dir / "queued").exists()
    with pytest.raises(InputError, match="no such job"):
        queue.status("not-a-job")


def test_a_job_finishes_and_saves_after_its_session_went_away(queue, tiny_model):
    box = {}

    def session() -> None:  # a browser tab: submits, then disappears without polling
        box["id"] = queue.submit(small(tiny_model, "class:tench", "class:hen", out_dir="gone"), "tab-closed")

    t = threading.Thread(target=session)
    t.start()
    t.join()
    del t
    wait_for(queue.idle, timeout=60)
    st = queue.status(box["id"])
    assert st.state == "done"
    assert sorted(p.name for p in (queue.settings.results_dir / "gone").iterdir()) == ["0_tench.json", "0_tench.png", "8_hen.json", "8_hen.png"]
    assert_results_load(st)


def test_a_bad_target_fails_the_job_with_one_line_and_writes_nothing(queue, tiny_model):
    st = queue.wait(queue.submit(small(tiny_model, "class:tench", "class:99999", out_dir="bad"), "s"), timeout=60)
    assert st.state == "failed" and "out of range" in st.error and "\n" not in st.error and st.error_kind == "input"
    assert not (queue.settings.results_dir / "bad").exists()
    ok = queue.wait(queue.submit(small(tiny_model, out_dir="after"), "s"), timeout=60)
    assert ok.state == "done" and ok.error_kind is None  # the worker survived


def test_a_bug_in_a_job_is_an_internal_failure_and_the_worker_survives(settings, tiny_model, monkeypatch):
    from dgncore.serving import local_queue

    def broken(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(local_queue, "execute", broken)
    q = LocalQueue(dataclasses.replace(settings, job_process=False))  # the patch reaches a job run in this process only
    try:
        st = q.wait(q.submit(small(tiny_model, out_dir="bug"), "s"), timeout=60)
        assert st.state == "failed" and st.error_kind == "internal" and "ZeroDivisionError" in st.error
        monkeypatch.undo()
        assert q.wait(q.submit(small(tiny_model, out_dir="after-bug"), "s"), timeout=60).state == "done"
    finally:
        q.close()


def test_jobs_run_in_a_child_process_and_one_killed_mid_job_is_lost_with_a_sentence(queue, tiny_model):
    import signal

    others = set(_job_children())  # job processes of other tests' queues
    first = queue.wait(queue.submit(small(tiny_model, out_dir="first"), "s"), timeout=60)
    assert first.state == "done"
    (worker,) = queue._workers.values()
    running = queue.submit(long(tiny_model, out_dir="killed"), "s")
    wait_for(lambda: queue.status(running).step >= 5)
    (child,) = set(_job_children()) - others  # the job runs in a process of its own
    os.kill(child, signal.SIGKILL)
    st = queue.wait(running, timeout=30)
    assert st.state == "failed" and st.error_kind == "lost" and "stopped before it finished" in st.error and "\n" not in st.error
    after = queue.wait(queue.submit(small(tiny_model, out_dir="after"), "s"), timeout=60)  # a new child takes the next job
    assert after.state == "done" and worker.is_alive()
    assert_results_load(after)


@pytest.mark.parametrize("given, kept", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_job_process_lets_openmp_sleep_unless_the_environment_says_otherwise(given, kept):
    # the job's threads yield the cores to the web server beside them (bench/README.md, click_to_picture.py)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    code = ("import os, sys; from dgncore.serving.job_process import quiet_openmp; assert 'torch' not in sys.modules; "
            "quiet_openmp(); print(os.environ['OMP_WAIT_POLICY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == kept


@pytest.mark.parametrize("command, policy", [("worker", "PASSIVE"), ("generate", "None")])
def test_the_worker_command_sets_the_wait_policy_before_torch_loads(command, policy):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import os, sys; import dgncore.__main__ as m; "
            "m.build_parser = lambda: sys.exit(print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)); "
            f"m.main([{command!r}])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.stdout.split() == [policy, "False"], out.stderr  # the command line keeps OpenMP's default


def _job_children() -> list[int]:
    """This process's live job processes (Linux): spawned children, not multiprocessing's resource tracker."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"spawn_main" in cmdline:
            out.append(int(proc.name))
    return out


@pytest.mark.slow
def test_a_job_past_its_time_limit_is_stopped_and_keeps_what_it_had(settings, tiny_model):
    q = LocalQueue(dataclasses.replace(settings, job_timeout=1))
    try:
        st = q.wait(q.submit(long(tiny_model, out_dir="slow"), "s"), timeout=60)
    finally:
        q.close()
    assert st.state == "cancelled" and "longer than 1 s" in st.error
    assert_results_load(st)


def test_gif_display_name_and_the_job_log(settings, tiny_model, tmp_path):
    import json

    from PIL import Image

    q = LocalQueue(dataclasses.replace(settings, job_log=tmp_path / "log" / "jobs.jsonl"))
    try:
        st = q.wait(q.submit(small(tiny_model, "class:tench", "class:hen", steps=25, overrides={"early_stop": 0}, gif=True, model_name="my upload", out_dir="g"), "s"), timeout=60)
        bad = q.wait(q.submit(small(tiny_model, "class:nope", out_dir="b"), "s"), timeout=60)
    finally:
        q.close()
    assert st.state == "done" and [r["model"] for r in st.records] == ["my upload"] * 2
    with Image.open(st.out_dir / "0_tench.gif") as gif:
        assert gif.n_frames >= 3  # steps 10, 20, 25 and the saved PNG (Pillow merges equal frames)
    lines = [json.loads(line) for line in (tmp_path / "log" / "jobs.jsonl").read_text().splitlines()]
    assert [(e["job"], e["state"]) for e in lines] == [(st.job_id, "done"), (bad.job_id, "failed")]
    assert lines[0]["files"] == ["0_tench.png", "8_hen.png"] and lines[0]["queue_wait"] >= 0 and "unknown class" in lines[1]["error"]


def test_a_crash_mid_write_leaves_no_broken_entry(settings, tiny_model, monkeypatch):
    import dgncore.data as data

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(data.os, "replace", crash)
    with pytest.raises(OSError):
        execute(small(tiny_model, out_dir="crash"), settings)
    assert list((settings.results_dir / "crash").iterdir()) == []  # no PNG, no JSON, no temp file


def test_the_queue_is_one_per_process_and_follows_the_environment(monkeypatch, tmp_path, tiny_model):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DGN_RESULTS", raising=False)
    monkeypatch.setenv("DGN_RESULTS_DIR", str(tmp_path / "a"))
    reset_queue()
    try:
        q = get_queue()
        assert isinstance(q, LocalQueue) and get_queue() is q and q.settings.results_dir == tmp_path / "a"
        job = q.submit(long(tiny_model, out_dir="old"), "s")
        monkeypatch.setenv("DGN_RESULTS_DIR", str(tmp_path / "b"))
        q2 = get_queue()
        assert q2 is not q and q2.settings.results_dir == tmp_path / "b"
        with pytest.raises(InputError, match="shut down"):
            q.submit(small(tiny_model), "s")
        q.cancel(job)
        assert q.wait(job, timeout=30).state == "cancelled"  # the old queue still answers for its jobs
        assert q2.wait(q2.submit(small(tiny_model, out_dir="new"), "s"), timeout=60).state == "done"
        assert (tmp_path / "b" / "new" / "0_tench.png").is_file()
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
        assert isinstance(get_queue(), RedisQueue)
    finally:
        reset_queue()


# --------------------------------------------------------------------------- the request and its limits

HOSTED = Limits.from_env({"DGN_HOSTED": "1"})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": -1}, "steps must be between 1 and 300"),
        ({"steps": 0}, "steps must be between"),
        ({"steps": 10**12}, "steps must be between"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"steps": True}, "steps must be a whole number"),
        ({"size": 0}, "image size must be between 16 and 256"),
        ({"size": 100_000}, "image size"),
        ({"seed": -1}, "seed must be between"),
        ({"seed": 2**63}, "seed must be between"),
        ({"width": float("nan")}, "width must be a number"),
        ({"width": 1e9}, "width must be a number"),
        ({"targets": ()}, "at least one target"),
        ({"targets": tuple(f"class:{i}" for i in range(9))}, "at most 8 targets"),
        ({"targets": ("class:tench", "class:tench")}, "twice"),
        ({"targets": ("class:" + "x" * 600,)}, "too long"),
        ({"targets": (42,)}, "must be text"),
        ({"method": "rm -rf /"}, "unknown method"),
        ({"method": "pretrained-paper"}, "runs 1200 steps; this server allows 300"),
        ({"model": "/tmp/evil.pt"}, "not offered on this server"),
        ({"model": "vgg16"}, "not offered"),
        ({"weights": "/etc/passwd"}, "weight files cannot be used"),
        ({"device": "cuda"}, "chosen by the server"),
        ({"out_dir": "/etc"}, "relative to the results folder"),
        ({"out_dir": "../../etc"}, "not allowed"),
        ({"out_dir": "a/../../b"}, "not allowed"),
        ({"out_dir": "C:\\Windows"}, "relative"),
        ({"out_dir": "x" * 400}, "1-300 characters"),
        ({"overrides": {"lr": float("inf")}}, "lr must be a finite"),
        ({"overrides": {"lr": 1e6}}, "learning rate"),
        ({"overrides": {"checkpoint": "/etc/passwd"}}, "unknown setting"),
        ({"overrides": {"final": "worst"}}, "final must be"),
    ],
)
def test_hosted_limits_refuse_absurd_requests(change, message):
    spec = dataclasses.replace(JobSpec(("class:tench",), method="pixel"), **change)
    with pytest.raises(InputError, match=message):
        spec.validate(HOSTED)


def test_hosted_limits_pass_a_normal_request_and_come_from_the_environment():
    preset = JobSpec(("class:tench", "class:hen"), method="untrained", steps=100, size=128, out_dir="sessions/abc-1", overrides={"lr": 0.01}).validate(HOSTED)
    assert preset.steps == 100 and preset.generator.out_size == 128 and preset.lr == 0.01
    assert not HOSTED.allow_uploads and not HOSTED.allow_torchscript and HOSTED.models == ("efficientnet_lite0", "efficientnet_lite2")
    env = Limits.from_env({"DGN_HOSTED": "1", "DGN_MAX_STEPS": "50", "DGN_MAX_BATCH": "2", "DGN_MAX_SIZE": "64", "DGN_MAX_QUEUED_PER_SESSION": "1", "DGN_ALLOW_UPLOADS": "1", "DGN_MODELS": "efficientnet_lite0"})
    assert (env.max_steps, env.max_batch, env.max_size, env.max_queued_per_session, env.allow_uploads, env.models) == (50, 2, 64, 1, True, ("efficientnet_lite0",))
    local = Limits.from_env({})
    assert not local.hosted and local.allow_torchscript and local.models == () and local.max_steps == 20_000
    for bad in ({"DGN_MAX_STEPS": "lots"}, {"DGN_MAX_STEPS": "-5"}, {"DGN_HOSTED": "maybe"}, {"DGN_QUEUE_NAME": "a b"}):
        with pytest.raises(InputError, match="environment variable"):
            Limits.from_env(bad)


def test_a_spec_round_trips_through_json_and_refuses_unknown_fields():
    import json

    spec = JobSpec(["class:tench"], method="pixel", steps=3, overrides={"lr": 0.1})
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(InputError, match="unknown job setting"):
        JobSpec.from_dict({**spec.to_dict(), "__class__": "os.system"})
    with pytest.raises(InputError, match="needs targets"):
        JobSpec.from_dict({"model": "x"})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"builtin": "rm -rf"}, "unknown built-in model"),
        ({"builtin": None, "model": "/tmp/evil.pt"}, "not offered on this server"),
        ({"model": "vgg16"}, "a built-in model or a model, not both"),
        ({"methods": ("magic",)}, "bad methods"),
        ({"methods": ()}, "bad methods"),
        ({"seeds": (0, "1")}, "seeds must be whole numbers"),
        ({"seeds": tuple(range(21))}, "seeds must be 1-20"),
        ({"seeds": (2**63,)}, "seed must be between"),
        ({"steps": 301}, "steps must be between 1 and 300"),
        ({"k": 0}, "k \\(images per class"),
        ({"samples": 65}, "samples must be between"),
        ({"classes": ("x" * 300,)}, "classes must be at most"),
        ({"dataset": "/etc"}, "sample folders cannot be used on this server"),
        ({"device": "cuda"}, "chosen by the server"),
        ({"out_dir": "../../etc"}, "not allowed"),
        ({"kind": "generate"}, "kind 'audit'"),
    ],
)
def test_hosted_limits_refuse_absurd_audits(change, message):
    spec = dataclasses.replace(AuditSpec("audit/planted-1", steps=30), **change)
    with pytest.raises(InputError, match=message):
        spec.validate(HOSTED)


def test_an_audit_spec_round_trips_and_is_told_apart_from_a_generation_job():
    import json

    spec = AuditSpec("audit/planted-1", methods=["untrained", "pixel"], seeds=[0, 1], steps=30)
    spec.validate(HOSTED)  # the built-in demo is allowed on a public server
    back = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and isinstance(back, AuditSpec) and back.seeds == (0, 1)
    assert isinstance(spec_from_dict(JobSpec(("class:tench",)).to_dict()), JobSpec)
    with pytest.raises(InputError, match="needs out_dir"):
        spec_from_dict({"kind": "audit"})
    assert spec.summary() == {"kind": "audit", "model": "planted", "method": "untrained,pixel", "steps": 30, "targets": 0, "seeds": 2}


# --------------------------------------------------------------------------- RQ on a real Redis

REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (Debian package redis-server); the RQ path is not tested")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    from redis import Redis

    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _pings(Redis.from_url(url)), timeout=20)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(conn) -> bool:
    try:
        return bool(conn.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


@pytest.fixture
def rq_settings(redis_url, tmp_path):
    from redis import Redis

    Redis.from_url(redis_url).flushdb()
    return Limits(results_dir=tmp_path / "shared-results", redis_url=redis_url, max_queued_per_session=3, queue_name="dgntest")


def worker_env(settings: Limits) -> dict[str, str]:
    env = dict(os.environ, REDIS_URL=settings.redis_url, DGN_RESULTS_DIR=str(settings.results_dir), DGN_QUEUE_NAME=settings.queue_name, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("DGN_HOSTED", None)
    return env


def run_worker(settings: Limits, *extra: str, **kw):
    return subprocess.Popen([sys.executable, "-m", "dgncore", "worker", "--threads", "1", *extra], cwd=ROOT, env=worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def stop_worker(worker: subprocess.Popen) -> None:
    """SIGTERM (a warm shutdown lets the current job end), then SIGKILL if a loaded machine
    keeps it past 30 s: the test's verdict is its asserts, not how fast RQ says goodbye."""
    worker.terminate()
    try:
        worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.communicate(timeout=30)


@pytest.mark.slow
@needs_redis
def test_rq_jobs_run_in_order_in_a_worker_process_and_save_their_files(rq_settings, tiny_model):
    q = RedisQueue(rq_settings)
    ok = [q.submit(small(tiny_model, "class:tench", "class:hen", seed=i, out_dir=f"r{i}"), f"s{i % 2}") for i in range(3)]
    cancelled = q.submit(small(tiny_model, seed=7, out_dir="never"), "s9")
    bad = q.submit(small(tiny_model, "class:99999", out_dir="bad"), "s9")
    assert [q.status(i).position for i in ok] == [1, 2, 3]
    assert q.status(ok[0]).state == "queued" and q.session_jobs("s0") == [ok[0], ok[2]]
    assert q.cancel(cancelled) and q.status(cancelled).state == "cancelled"
    worker = run_worker(rq_settings, "--burst")  # exits when the queue is empty
    out, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, out
    done = [q.status(i) for i in ok]
    assert [s.state for s in done] == ["done"] * 3, [s.error for s in done]
    assert sorted(done, key=lambda s: s.started) == done
    for s in done:
        assert s.step == s.total == 2 and s.queue_wait > 0 and s.preview
        assert_results_load(s)
    failed = q.status(bad)
    assert failed.state == "failed" and "out of range" in failed.error and "\n" not in failed.error and failed.error_kind == "input"
    assert q.status(cancelled).state == "cancelled" and not (rq_settings.results_dir / "never").exists()
    assert not (rq_settings.results_dir / "bad").exists()
    assert q.session_jobs("s0") == []


@pytest.mark.slow
@needs_redis
def test_rq_runs_an_audit_job_in_a_worker_process(rq_settings, tmp_path, monkeypatch):
    from dgncore.audit import planted as P

    cache = tmp_path / "cache"  # a tiny built-in planted model (about a second to train), seen by the worker
    P.ensure_planted(P.PlantedConfig(pool=64, steps=3, batch=16), root=cache / "planted" / P.DEFAULT.key(), samples_per_class=2, evidence_per_class=4)
    monkeypatch.setenv("DGN_CACHE", str(cache))
    q = RedisQueue(rq_settings)
    job = q.submit(AuditSpec("audit/demo", methods=("untrained",), seeds=(0,), steps=2), "me")
    assert q.status(job).position == 1
    worker = run_worker(rq_settings, "--burst")
    out, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, out
    st = q.status(job)
    assert st.state == "done", st.error
    assert st.out_dir == rq_settings.results_dir / "audit" / "demo" and (st.out_dir / "report.json").is_file()
    assert st.stage == "writing the report" and st.step == st.total == 1


@pytest.mark.slow
@needs_redis
def test_rq_session_limit_and_cancelling_a_running_job(rq_settings, tiny_model):
    q = RedisQueue(rq_settings)
    worker = run_worker(rq_settings)
    try:
        running = q.submit(long(tiny_model, out_dir="long"), "me")
        mine = [q.submit(small(tiny_model, seed=i, out_dir=f"m{i}"), "me") for i in range(2)]
        with pytest.raises(InputError, match="limit is 3"):
            q.submit(small(tiny_model, seed=5), "me")
        st = wait_for(lambda: (s := q.status(running)).step >= 10 and s, timeout=120)
        assert st.state == "running" and st.total == 20_000 and st.preview and open_image(st.preview[0]).size == (32, 32)
        assert len(st.activation) >= 10 and st.checks and st.preview_no >= 1
        with pytest.raises(InputError, match="another session"):
            q.cancel(running, session_id="you")
        assert q.cancel(running, session_id="me")
        st = q.wait(running, timeout=60)
        assert st.state == "cancelled" and st.step < 20_000
        assert [q.wait(i, timeout=60).state for i in mine] == ["done", "done"]
        q.submit(small(tiny_model, seed=5, out_dir="m5"), "me")  # slots are free again
    finally:
        stop_worker(worker)


@pytest.mark.slow
@needs_redis
def test_a_job_whose_worker_is_killed_is_failed_in_seconds_and_another_worker_goes_on(rq_settings, tiny_model):
    from dgncore.serving.rq_queue import ALIVE_TTL_S, WORKER_LOST

    q = RedisQueue(rq_settings)
    worker = run_worker(rq_settings)
    try:
        job = q.submit(long(tiny_model, out_dir="long"), "me")
        wait_for(lambda: q.status(job).step >= 2, timeout=120)
    finally:
        worker.kill()  # SIGKILL: no goodbye to Redis, as when a container is killed
        worker.communicate(timeout=30)
    assert q.status(job).state == "running"  # RQ itself still thinks so (for minutes)
    st = wait_for(lambda: (s := q.status(job)).final and s, timeout=ALIVE_TTL_S + 15)
    assert st.state == "failed" and st.error == WORKER_LOST and st.error_kind == "lost"
    assert q.session_jobs("me") == []  # its slot is free again: Try again can send it
    other = run_worker(rq_settings)
    try:
        assert q.wait(q.submit(small(tiny_model, out_dir="again"), "me"), timeout=120).state == "done"
    finally:
        stop_worker(other)


def _start_redis(port: int, folder: Path) -> subprocess.Popen:
    from redis import Redis

    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _pings(Redis.from_url(f"redis://127.0.0.1:{port}/0")), timeout=20)
    return proc


@pytest.mark.slow
@needs_redis
def test_waiting_jobs_outlive_a_redis_restart_and_the_page_says_the_queue_is_away(dashboard_env, monkeypatch, tiny_model):
    """Redis keeps an append-only file on its volume: jobs that were waiting when it stopped
    are there when it is back, and run; meanwhile the page says what it waits for."""
    from dashboard import runner
    from dgncore.serving.status import QueueUnavailable

    port, folder = _free_port(), dashboard_env / "redis"
    folder.mkdir()
    redis = _start_redis(port, folder)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("DGN_QUEUE_NAME", "dgnrestart")
    reset_queue()
    try:
        run = runner.start_run([runner.Request(tiny_model, ("class:tench",), "pixel", 2, (0, 1), 32, model_name="tiny")], session_id="me")
        assert run.position == 1
        redis.terminate()  # SIGTERM: Redis writes its append-only file and stops
        redis.wait(20)
        assert run.poll().unavailable and "not answering" in run.unavailable and not run.done
        with pytest.raises(QueueUnavailable):
            runner.start_run([runner.Request(tiny_model, ("class:hen",), "pixel", 2, (0,), 32)], session_id="me")
        redis = _start_redis(port, folder)
        assert run.poll().unavailable is None and run.position == 1  # both jobs still wait
        settings = Limits.from_env()
        worker = run_worker(settings, "--burst")
        out, _ = worker.communicate(timeout=240)
        assert worker.returncode == 0, out
        assert run.wait(30) and run.error is None and [r["seed"] for r in run.records[0]] == [0, 1]
    finally:
        redis.terminate()
        redis.wait(20)


@pytest.mark.slow
@needs_redis
def test_a_serving_worker_waits_out_a_redis_restart(tmp_path, tiny_model):
    port, folder = _free_port(), tmp_path / "redis"
    folder.mkdir()
    redis = _start_redis(port, folder)
    settings = Limits(results_dir=tmp_path / "results", redis_url=f"redis://127.0.0.1:{port}/0", queue_name="dgnblip")
    worker = run_worker(settings)
    try:
        q = RedisQueue(settings)
        assert q.wait(q.submit(small(tiny_model, out_dir="before"), "me"), timeout=120).state == "done"
        redis.terminate()
        redis.wait(20)
        time.sleep(3)
        assert worker.poll() is None  # still there, waiting for Redis
        redis = _start_redis(port, folder)
        assert q.wait(q.submit(small(tiny_model, out_dir="after"), "me"), timeout=120).state == "done"
    finally:
        stop_worker(worker)
        redis.terminate()
        redis.wait(20)


def test_the_worker_command_needs_redis(monkeypatch, capsys):
    from dgncore.__main__ import main

    monkeypatch.setattr(os, "environ", os.environ.copy())  # the worker command sets REDIS_URL for its jobs: not for the next test
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["worker", "--burst"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "REDIS_URL" in err
    assert main(["worker", "--burst", "--redis", "redis://127.0.0.1:1/0"]) == 2  # nothing listens on port 1
    assert "cannot reach Redis" in capsys.readouterr().err


# --------------------------------------------------------------------------- the dashboard's seam


@pytest.fixture
def dashboard_env(monkeypatch, tmp_path):
    for key in ("REDIS_URL", "DGN_RESULTS", "DGN_HOSTED", "DGN_MODELS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DGN_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("DGN_JOB_LOG", str(tmp_path / "jobs.jsonl"))
    reset_queue()
    yield tmp_path
    reset_queue()


def test_a_dashboard_run_waits_its_turn_in_the_queue(dashboard_env, tiny_model):
    import json

    from dashboard import runner

    queue = get_queue()
    blocker = queue.submit(long(tiny_model, out_dir="blocker"), "another visitor")
    wait_for(lambda: queue.status(blocker).state == "running")
    request = runner.Request(tiny_model, ("class:tench",), "pixel", 12, (0, 1), 32, model_name="tiny")
    run = runner.start_run([request], session_id="me")
    assert run.poll().position == 1 and run.stage() == "queued"  # behind the running job
    assert len(queue.session_jobs("me")) == 2  # both seeds wait in the queue, not in the page
    found = runner.running_run([request], session_id="a reloaded page")  # finds the same jobs in the queue
    assert found is not None and [j.job_id for j in found.jobs] == [j.job_id for j in run.jobs] and found.position == 1
    queue.cancel(blocker)
    assert run.wait(60) and run.error is None and run.bug is None and not run.cancelled
    records = run.records[0]
    assert [r["seed"] for r in records] == [0, 1] and run.position is None and run.fraction() == 1.0
    for r in records:
        assert Path(r["_file"]).is_file() and Path(r["_gif"]).is_file()
        assert Path(r["_file"]).parent == dashboard_env / "results" / "tiny" / "pixel-12-32px" / f"seed{r['seed']}"
    assert runner.running_run([request]) is None
    log = [json.loads(line) for line in (dashboard_env / "jobs.jsonl").read_text().splitlines()]
    assert [e["state"] for e in log] == ["cancelled", "done", "done"]


def test_a_dashboard_run_sends_its_seeds_as_the_sessions_share_of_the_queue_allows(dashboard_env, monkeypatch, tiny_model):
    from dashboard import runner

    monkeypatch.setenv("DGN_MAX_QUEUED_PER_SESSION", "1")
    reset_queue()
    run = runner.start_run([runner.Request(tiny_model, ("class:tench",), "pixel", 4, (0, 1, 2), 32, model_name="tiny")], session_id="me")
    assert [j.job_id is not None for j in run.jobs] == [True, False, False]
    assert run.wait(60) and run.error is None
    assert [r["seed"] for r in run.records[0]] == [0, 1, 2]


def test_a_dashboard_run_shows_why_a_job_failed_and_sends_no_more(dashboard_env, tiny_model):
    from dashboard import runner

    run = runner.start_run([runner.Request(tiny_model, ("class:no such class",), "pixel", 4, (0, 1), 32, model_name="tiny")], session_id="me")
    assert run.wait(60) and run.bug is None
    assert "no such class" in run.error and "\n" not in run.error
    assert [j.status.state for j in run.jobs] in (["failed", "cancelled"], ["failed", "failed"])
    assert run.records == [[]] and get_queue().session_jobs("me") == []


def test_stopping_a_dashboard_run_while_it_waits_cancels_its_job(dashboard_env, tiny_model):
    from dashboard import runner

    queue = get_queue()
    blocker = queue.submit(long(tiny_model, out_dir="blocker"), "another visitor")
    wait_for(lambda: queue.status(blocker).state == "running")
    run = runner.start_run([runner.Request(tiny_model, ("class:tench",), "pixel", 2, (0,), 32)], session_id="me")
    assert run.poll().position == 1
    run.stop()
    assert run.wait(30) and run.error is None and run.bug is None and run.records == [[]] and run.cancelled
    assert queue.session_jobs("me") == []
    assert queue.status(blocker).state == "running"  # someone else's job is not touched
    queue.cancel(blocker)
    assert not (dashboard_env / "results" / "tiny").exists()


def test_the_local_queue_finds_a_waiting_job_by_its_spec_and_sizes_its_threads(monkeypatch, tiny_model):
    import torch

    from dgncore.serving import local_queue

    seen = []
    monkeypatch.setattr(local_queue, "execute", lambda spec, settings, report, cancel: seen.append(torch.get_num_threads()) or {"records": [], "cancelled": False})
    monkeypatch.setenv("DGN_THREADS", "1")
    monkeypatch.setenv("DGN_JOB_PROCESS", "0")  # the patch reaches a job run in this process only
    q = LocalQueue(Limits.from_env())
    try:
        spec = small(tiny_model, out_dir="mine")
        assert q.find(spec) is None
        with q._cond:  # hold the worker back while the job waits
            job = q.submit(spec, "b")
            assert q.find(dataclasses.replace(spec)) == job and q.find(small(tiny_model, out_dir="other")) is None
        assert q.wait(job, timeout=30).state == "done" and q.find(spec) is None  # an ended job is not followed
        assert seen == [1]  # the queue's worker ran it on DGN_THREADS torch threads
    finally:
        q.close()


def test_a_worker_that_cannot_load_the_model_says_so_and_goes_on(tmp_path, monkeypatch, tiny_model):
    from dgncore.models import classifiers

    def broken(*a, **k):
        raise EOFError("Ran out of input")  # what an empty weights file gives

    monkeypatch.setattr(classifiers, "load_classifier", broken)
    q = LocalQueue(Limits(results_dir=tmp_path, job_process=False))  # the patch reaches a job run in this process only
    try:
        st = q.wait(q.submit(small(tiny_model, out_dir="x"), "me"), timeout=30)
        assert st.state == "failed" and st.error_kind == "internal"
        assert "cannot load the model" in st.error and "EOFError" in st.error and "\n" not in st.error
        monkeypatch.undo()
        assert q.wait(q.submit(small(tiny_model, out_dir="y"), "me"), timeout=60).state == "done"  # the same worker goes on
    finally:
        q.close()
