"""Click to picture: the same job from the dashboard in a browser and from the command line.

    python bench/click_to_picture.py [--rounds 3] [--threads 2] [--class 437] [--method natural] [--busy] [--json out.json]

Starts ``streamlit run dashboard/app.py`` on a free local port (every torch process here
gets ``OMP_NUM_THREADS=--threads``), warms it with one job, then runs ``--rounds`` pairs
in a shuffled order: ``python -m dgncore generate --target class:K --seed S`` timed as a
whole process (start-up included), and in headless Chromium (Debian's ``chromium``) the
See-a-class page for the same class, method and seed, timed from the click on Generate to
the picture on the page. Each job's own record says how long its optimisation took
(``seconds``), so the report splits the browser's time into the loop and the rest.

``--redis`` runs the app's jobs the hosted stack's way: queued in a local ``redis-server``
and run by one ``python -m dgncore worker`` process (not a thread of the app).

``--busy`` runs one more torch process (matrix products on ``--threads`` threads) for the
whole measurement: the machine of a demo that is doing something else.

Reports per pair and the medians: CLI wall seconds, browser click-to-picture seconds, the
ratio, and each side's optimisation seconds. Traffic goes only to 127.0.0.1; every wait
is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load_test import free_port, get, stop_processes  # noqa: E402

BUSY = """
import torch, time
torch.set_num_threads({threads})
a = torch.randn(1024, 1024)
end = time.time() + {seconds}
while time.time() < end:
    a = (a @ a).tanh()
"""


def env_for(args: argparse.Namespace, results: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DGN_", "STREAMLIT_")) and k != "REDIS_URL"}
    env.update(OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT), DGN_RESULTS=str(results),
               STREAMLIT_SERVER_FILE_WATCHER_TYPE="none", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    return env


def start_server(env: dict[str, str], logs: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=open(logs / "streamlit.log", "w"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if get(f"{base}/_stcore/health", 2)[0] == 200:
            return proc, base
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    stop_processes([proc])
    sys.exit(f"the server did not start; see {logs / 'streamlit.log'}")


def cli_job(args: argparse.Namespace, env: dict[str, str], seed: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "dgncore", "generate", "--target", f"class:{args.cls}", "--method", args.method, "--seed", str(seed), "--out", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.job_timeout)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"the CLI failed: {done.stderr.strip().splitlines()[-1:]}")
    rec = json.loads(next(out.glob("*.json")).read_text())
    return {"wall_s": wall, "optimise_s": rec.get("batch_seconds") or rec.get("seconds")}


def browser_job(browser, base: str, args: argparse.Namespace, seed: int, results: Path) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(args.job_timeout * 1000)
    try:
        page.goto(f"{base}/single?class={args.cls}&method={args.method}&seed={seed}")
        generate = page.get_by_role("button", name="Generate")
        generate.wait_for()
        t0 = time.perf_counter()
        generate.click()
        page.get_by_role("button", name="Download all as ZIP").wait_for(state="visible")
        page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 100 && i.closest('[data-testid=stImage]'))")
        click_s = time.perf_counter() - t0
    finally:
        page.close()
    recs = [json.loads(p.read_text()) for p in results.rglob(f"seed{seed}/*.json")]
    return {"click_s": click_s, "optimise_s": recs[0].get("batch_seconds") or recs[0].get("seconds") if recs else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of every process (OMP_NUM_THREADS)")
    ap.add_argument("--class", dest="cls", type=int, default=437, help="class index (437: beacon, lighthouse)")
    ap.add_argument("--method", default="natural")
    ap.add_argument("--busy", action="store_true", help="a torch process doing matrix products beside the measurement")
    ap.add_argument("--redis", action="store_true", help="the app queues its jobs in a local redis-server; one worker process runs them (the hosted stack's way)")
    ap.add_argument("--job-timeout", type=float, default=600)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="dgn-click-"))
    (work / "logs").mkdir()
    results = work / "results"
    env = env_for(args, results)
    helpers: list[subprocess.Popen] = []
    if args.redis:  # jobs in a process of their own, as the hosted stack runs them
        port = free_port()
        helpers.append(subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        env.update(REDIS_URL=f"redis://127.0.0.1:{port}/0", DGN_RESULTS_DIR=str(results))
        helpers.append(subprocess.Popen([sys.executable, "-m", "dgncore", "worker"], cwd=ROOT, env=env,
                                        stdout=open(work / "logs" / "worker.log", "w"), stderr=subprocess.STDOUT))
    server, base = start_server(env, work / "logs")
    busy = None
    rows: list[dict] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            try:
                warm = browser_job(browser, base, args, 9999, results)  # the server loads its classifier once, as a running demo has
                print(f"warm-up job in the browser: {warm['click_s']:.1f} s", file=sys.stderr)
                if args.busy:
                    busy = subprocess.Popen([sys.executable, "-c", BUSY.format(threads=args.threads, seconds=24 * 3600)], env=env)
                for r in range(args.rounds):
                    seed = 100 + r
                    row: dict = {"seed": seed}
                    for side in random.sample(["cli", "browser"], 2):
                        if side == "cli":
                            row["cli"] = cli_job(args, env, seed, work / f"cli{seed}")
                        else:
                            row["browser"] = browser_job(browser, base, args, seed, results)
                    row["ratio"] = row["browser"]["click_s"] / row["cli"]["wall_s"]
                    rows.append(row)
                    print(f"  seed {seed}: CLI {row['cli']['wall_s']:.1f} s (loop {row['cli']['optimise_s']:.1f}), browser "
                          f"{row['browser']['click_s']:.1f} s (loop {row['browser']['optimise_s']:.1f}), ratio {row['ratio']:.2f}", file=sys.stderr, flush=True)
            finally:
                browser.close()
    finally:
        if busy is not None:
            busy.kill()
        stop_processes(helpers + [server])
    med = lambda xs: statistics.median(xs)  # noqa: E731
    summary = {
        "method": args.method, "class": args.cls, "threads": args.threads, "busy": args.busy, "redis": args.redis, "rounds": rows,
        "median_ratio": med([r["ratio"] for r in rows]),
        "median_cli_s": med([r["cli"]["wall_s"] for r in rows]), "median_click_s": med([r["browser"]["click_s"] for r in rows]),
        "median_cli_loop_s": med([r["cli"]["optimise_s"] for r in rows]), "median_browser_loop_s": med([r["browser"]["optimise_s"] for r in rows]),
    }
    print(f"median: CLI {summary['median_cli_s']:.1f} s (loop {summary['median_cli_loop_s']:.1f}), browser {summary['median_click_s']:.1f} s "
          f"(loop {summary['median_browser_loop_s']:.1f}); browser / CLI = {summary['median_ratio']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
