"""Load test of the hosted demo: N browser sessions at once against a real server.

    python bench/load_test.py --sessions 8 --jobs 40 [--redis] [--report out.json]
    python bench/load_test.py --url http://127.0.0.1:8598 --work VOLUME_PATH ...   # a running stack

With ``--url`` nothing is started: the sessions go to that server (for example the compose
stack, deploy/stack.sh), and ``--work`` is where its results volume is on this machine
(``results/`` and ``jobs.jsonl`` in it, as compose.yaml sets them); only jobs sent during
this test are counted.

Starts ``streamlit run dashboard/app.py`` in hosted mode on a free local port (with
``--redis``: also a local ``redis-server`` and ``python -m dgncore worker`` processes),
opens ``--sessions`` headless Chromium pages (Debian's ``chromium``; each page is its own
Streamlit session) on the See-a-class page, and has each submit its share of ``--jobs``
small jobs one after another (a new seed each time, so nothing comes from the cache) by
clicking Generate and waiting for the result. Meanwhile it polls ``/_stcore/health``.

Reports: jobs finished / failed / lost, p50/p95 queue wait (from the server's job log,
``DGN_JOB_LOG``), p50/p95 time from click to result in the browser, health-check latency
and failures throughout, and whether every finished job's PNG and JSON exist and load.
Exits 1 if a job was lost or failed, a file is missing or broken, or a health check
failed. Traffic goes only to 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dgncore.data import open_image  # noqa: E402
from dgncore.errors import InputError  # noqa: E402
from dgncore.result_files import read_result  # noqa: E402

HEALTH_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = HEALTH_TIMEOUT_S) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except OSError:
        return 0, b""


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


class HealthPoller(threading.Thread):
    """GET /_stcore/health every ``every`` seconds until stopped; keeps each latency."""

    def __init__(self, url: str, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url, self.every = url, every
        self.latencies: list[float] = []
        self.when: list[float] = []  # seconds since the poller started, per latency
        self.failures: list[tuple[float, str]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        t_start = time.perf_counter()
        while not self._stop_event.is_set():
            t = time.perf_counter()
            status, body = get(self.url)
            dt = time.perf_counter() - t
            if status == 200 and body == b"ok":
                self.latencies.append(dt)
                self.when.append(t - t_start)
            else:
                self.failures.append((time.time(), f"status {status} after {dt:.1f}s"))
            self._stop_event.wait(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(HEALTH_TIMEOUT_S + 1)


def start_processes(args, work: Path) -> tuple[list[subprocess.Popen], str, dict[str, str]]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("DGN_", "STREAMLIT_")) or key == "REDIS_URL":
            env.pop(key)
    env.update(
        DGN_HOSTED="1", DGN_RESULTS_DIR=str(work / "results"), DGN_JOB_LOG=str(work / "jobs.jsonl"),
        DGN_MAX_QUEUED_PER_SESSION=str(args.per_session), OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT),
        # as in the Docker image: no file watcher (no reloads mid-test), no tracebacks for visitors
        STREAMLIT_SERVER_FILE_WATCHER_TYPE="none", STREAMLIT_CLIENT_SHOW_ERROR_DETAILS="none", STREAMLIT_CLIENT_TOOLBAR_MODE="viewer",
    )
    procs: list[subprocess.Popen] = []
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    if args.redis:
        redis = shutil.which("redis-server")
        if redis is None:
            sys.exit("--redis needs redis-server (Debian package redis-server)")
        port = free_port()
        procs.append(subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work)],
                                      stdout=open(logs / "redis.log", "w"), stderr=subprocess.STDOUT))
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.5)
        for i in range(args.workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "dgncore", "worker", "--threads", str(args.threads), "--name", f"load-{i}"],
                                          cwd=ROOT, env=env, stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT))
    port = args.port or free_port()
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=ROOT, env=env, stdout=open(logs / "streamlit.log", "w"), stderr=subprocess.STDOUT,
    ))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if get(f"{base}/_stcore/health", 2)[0] == 200:
            return procs, base, env
        if procs[-1].poll() is not None:
            break
        time.sleep(0.5)
    stop_processes(procs)
    sys.exit(f"the server did not start; see {logs / 'streamlit.log'}")


def stop_processes(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


async def session(browser, base: str, index: int, seeds: list[int], args, out: dict) -> None:
    """One visitor: opens the See-a-class page and runs one job per seed, in turn."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(args.job_timeout * 1000)
    query = f"class={index % 1000}&method={args.method}&steps={args.steps}&size={args.size}&seed={seeds[0]}"
    await page.goto(f"{base}/single?{query}")
    generate = page.get_by_role("button", name="Generate")
    zip_button = page.get_by_role("button", name="Download all as ZIP")
    await generate.wait_for()
    for k, seed in enumerate(seeds):
        t0 = time.perf_counter()
        try:
            if k:
                seed_box = page.get_by_role("spinbutton", name="Variant", exact=True)  # the seed, in plain words
                await seed_box.fill(str(seed))
                await seed_box.press("Enter")
                await zip_button.wait_for(state="detached")
            await generate.click()
            await zip_button.wait_for(state="visible")
            out["client_s"].append(time.perf_counter() - t0)
            out["done"].append((index, seed))
        except Exception as e:  # noqa: BLE001 - record and go on with the next job
            out["errors"].append(f"session {index} seed {seed}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            shot = Path(args.work) / "logs" / f"session{index}-seed{seed}.png"
            try:
                await page.screenshot(path=str(shot), full_page=True)
            except Exception:  # noqa: BLE001
                pass
    await context.close()


async def drive(base: str, args) -> dict:
    from playwright.async_api import async_playwright

    out: dict = {"client_s": [], "done": [], "errors": []}
    first = args.seed_offset + 1
    per = [list(range(s * 1000 + first, s * 1000 + first + args.jobs // args.sessions + (1 if s < args.jobs % args.sessions else 0))) for s in range(args.sessions)]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            await asyncio.wait_for(
                asyncio.gather(*(session(browser, base, i, seeds, args, out) for i, seeds in enumerate(per) if seeds)),
                timeout=args.total_timeout,
            )
        except asyncio.TimeoutError:
            out["errors"].append(f"the whole test ran past {args.total_timeout} s")
        finally:
            await browser.close()
    out["requested"] = sum(len(s) for s in per)
    return out


def check_results(work: Path, since: float = 0.0) -> dict:
    """Read the job log (the jobs sent after ``since``); every finished job's files must exist and load."""
    log = work / "jobs.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    entries = [e for e in entries if (e.get("submitted") or 0) >= since]
    root = work / "results"
    bad_files: list[str] = []
    for e in entries:
        if e["state"] != "done":
            continue
        for png in e["files"]:
            path = root / e["out_dir"] / png
            try:
                open_image(path)
                read_result(path.with_suffix(".json"))
            except InputError as err:
                bad_files.append(f"{path.relative_to(root)}: {err}")
        if not e["files"]:
            bad_files.append(f"job {e['job']}: no files")
    return {"entries": entries, "bad_files": bad_files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--method", default="pixel")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--per-session", type=int, default=3, help="DGN_MAX_QUEUED_PER_SESSION of the server")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server / workers")
    ap.add_argument("--redis", action="store_true", help="run jobs through a local redis-server and dgncore workers")
    ap.add_argument("--workers", type=int, default=1, help="with --redis: worker processes")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--job-timeout", type=float, default=300, help="seconds one job may take in the browser")
    ap.add_argument("--total-timeout", type=float, default=1500)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--work", help="folder for results and logs (default: a new temporary folder)")
    ap.add_argument("--report", help="write the report as JSON here")
    ap.add_argument("--seed-offset", type=int, default=0, help="start the seeds here (a second run against the same results: new pictures)")
    ap.add_argument("--url", help="test this running server (start nothing); --work: where its results volume is")
    args = ap.parse_args(argv)
    if not 1 <= args.sessions <= 64 or not 1 <= args.jobs <= 2000:
        ap.error("--sessions must be 1-64 and --jobs 1-2000")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="dgn-load-"))
    work.mkdir(parents=True, exist_ok=True)
    args.work = str(work)
    (work / "logs").mkdir(exist_ok=True)

    since = time.time()
    procs, base = ([], args.url.rstrip("/")) if args.url else start_processes(args, work)[:2]
    poller = HealthPoller(f"{base}/_stcore/health")
    t0 = time.perf_counter()
    try:
        poller.start()
        browser = asyncio.run(drive(base, args))
    finally:
        wall = time.perf_counter() - t0
        poller.stop()
        time.sleep(1.0)  # the last job's log line
        stop_processes(procs)
    res = check_results(work, since)
    entries = res["entries"]
    done = [e for e in entries if e["state"] == "done"]
    failed = [e for e in entries if e["state"] != "done"]
    waits = [e["queue_wait"] for e in done if e["queue_wait"] is not None]
    runs = [e["finished"] - e["started"] for e in done if e["started"] and e["finished"]]
    lost = browser["requested"] - len(done)
    report = {
        "sessions": args.sessions, "jobs_requested": browser["requested"], "jobs_finished": len(done), "jobs_failed": len(failed),
        "jobs_lost": lost, "browser_errors": browser["errors"], "files_checked": sum(len(e["files"]) * 2 for e in done),
        "bad_files": res["bad_files"], "queue_wait_p50_s": pct(waits, 50), "queue_wait_p95_s": pct(waits, 95), "queue_wait_max_s": max(waits, default=None),
        "job_run_p50_s": pct(runs, 50), "click_to_result_p50_s": pct(browser["client_s"], 50), "click_to_result_p95_s": pct(browser["client_s"], 95),
        "health_checks": len(poller.latencies) + len(poller.failures), "health_failures": len(poller.failures),
        "health_p50_ms": None if not poller.latencies else 1000 * statistics.median(poller.latencies),
        "health_p95_ms": None if not poller.latencies else 1000 * pct(poller.latencies, 95),
        "health_max_ms": None if not poller.latencies else 1000 * max(poller.latencies),
        "health_slowest": sorted(([round(1000 * dt), round(at, 1)] for dt, at in zip(poller.latencies, poller.when)), reverse=True)[:5],
        "wall_s": wall, "mode": f"running server {args.url}" if args.url else "redis + worker" if args.redis else "in-process queue", "work": str(work),
        "job": f"{args.method}, {args.steps} steps, {args.size}px, efficientnet_lite0",
    }
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    f = lambda x, unit="s": "-" if x is None else (f"{x:.0f} ms" if unit == "ms" else f"{x:.2f} s")  # noqa: E731
    print(f"load test: {args.sessions} sessions, {report['jobs_requested']} jobs ({report['job']}), {report['mode']}, {wall:.0f} s")
    print(f"  jobs finished {len(done)}, failed {len(failed)}, lost {lost}; browser errors {len(browser['errors'])}")
    print(f"  queue wait p50 {f(report['queue_wait_p50_s'])}, p95 {f(report['queue_wait_p95_s'])}, max {f(report['queue_wait_max_s'])}; job run p50 {f(report['job_run_p50_s'])}")
    print(f"  click to result p50 {f(report['click_to_result_p50_s'])}, p95 {f(report['click_to_result_p95_s'])}")
    print(f"  health checks {report['health_checks']}, failed {report['health_failures']}; latency p50 {f(report['health_p50_ms'], 'ms')}, p95 {f(report['health_p95_ms'], 'ms')}, max {f(report['health_max_ms'], 'ms')}")
    print("  slowest health checks (ms at s into the test):", ", ".join(f"{ms} @ {at}" for ms, at in report["health_slowest"]))
    print(f"  files checked {report['files_checked']}, broken or missing {len(res['bad_files'])}")
    health = [f"health check at {time.strftime('%H:%M:%S', time.localtime(t))}: {why}" for t, why in poller.failures]
    for line in (browser["errors"] + res["bad_files"] + [f"job {e['job']}: {e['state']} {e['error']}" for e in failed] + health)[:20]:
        print("   ", line)
    ok = not (lost or failed or res["bad_files"] or poller.failures or browser["errors"])
    print("OK" if ok else "FAILED", f"(logs and results in {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
