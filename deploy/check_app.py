"""What a visitor sees, checked in headless Chromium against a running app (a container or a stack).

    python deploy/check_app.py --url http://127.0.0.1:8501 start
    python deploy/check_app.py --url ... see [--class 437] [--method natural] [--seed 0] [--expect saved|made|followed] [--during CMD]

``start``: the start page draws its ready-made examples (seconds from opening the page
until three pictures have loaded). ``see``: See a class for one class, method and seed:
press Generate when it is not made yet and wait for the picture (``--expect made``), or
find it already made and shown from disk without pressing anything (``--expect saved``).
Prints one JSON line (what was seen, with seconds) and exits 1 when the page did not show
what was expected, with a screenshot under ``--shots``. Traffic goes only to ``--url``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: words of the live view (waiting, starting, running, saving)
LIVE = "in the queue|starting \\(loading|step \\d+ of|saving the picture|Waiting for the job queue"
#: a run has ended: its pictures (and their ZIP) are on the page, or it failed with a Try again
ENDED = """() => [...document.querySelectorAll('button')].some(b => /Download all as ZIP|Try again/.test(b.innerText))"""
ALERTS = '[data-testid="stAlert"], [role="alert"]'
#: where screenshots go (set by --shots)
SHOTS = Path("deploy/out")
PICTURES_LOADED = """n => [...document.querySelectorAll('[data-testid=stImage] img, [data-testid=stFullScreenFrame] img')]
    .filter(i => i.complete && i.naturalWidth > 32).length >= n"""


def start_page(page, url: str, timeout_s: float) -> dict:
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(PICTURES_LOADED, arg=3, timeout=timeout_s * 1000)
    return {"check": "start", "pictures_s": round(time.perf_counter() - t0, 1)}


def see_a_class(page, url: str, cls: int, method: str, seed: int, expect: str, timeout_s: float, during: str | None = None, n: int = 1) -> dict:
    """See a class for one class, method and seed: shown from disk, followed while it runs
    (a reload, or an app restarted while its jobs waited), or made with Generate. With
    ``during``, that shell command runs once the picture is being made (a fault), and a
    failed run is sent again with Try again."""
    ms = timeout_s * 1000
    t0 = time.perf_counter()
    page.goto(f"{url}/single?class={cls}&method={method}&seed={seed}" + (f"&n={n}" if n > 1 else ""))
    page.get_by_role("button", name="Generate").wait_for(timeout=ms)
    page.wait_for_function(f"() => /Not made yet|made before|ready-made example|{LIVE}/.test(document.body.innerText)", timeout=ms)
    text = page.inner_text("body")
    saved = "made before" in text or "ready-made example" in text
    followed = not saved and "Not made yet" not in text
    out = {"check": "see", "class": cls, "method": method, "seed": seed, "pictures": n, "was_saved": saved, "followed": followed, "page_s": round(time.perf_counter() - t0, 1)}
    if expect == "saved" and not saved:
        raise AssertionError("the picture was not shown from disk")
    if expect == "made" and (saved or followed):
        raise AssertionError("the picture was already made or being made: use another seed")
    if expect == "followed" and not (followed or saved):
        raise AssertionError("the run sent before was neither followed nor saved: the page says it is not made yet")
    t1 = time.perf_counter()
    if not saved and not followed:
        page.get_by_role("button", name="Generate").click()
    if during:
        page.wait_for_function(r"() => /step \d+ of \d+/.test(document.body.innerText)", timeout=ms)
        at, said = round(time.perf_counter() - t1, 1), []
        proc = subprocess.Popen(["sh", "-c", during])
        while proc.poll() is None:  # what the page says meanwhile (the queue away, a lost job)
            line = next((ln for ln in page.inner_text("body").splitlines() if re.search(r"Waiting for the job queue|slower than expected|stopped before", ln)), None)
            if line and line not in said:
                said.append(line.strip()[:200])
                page.screenshot(path=str(SHOTS / f"during-{int(time.time())}.png"))
            time.sleep(0.5)
        out["during"] = {"command": during, "rc": proc.returncode, "at_s": at, "page_said": said}
    if not saved:
        page.wait_for_function(ENDED, timeout=ms)
        if page.get_by_role("button", name="Try again").count():
            out["failed_with"] = sorted({t.strip() for t in page.locator(ALERTS).all_inner_texts() if t.strip()})
            out["failed_s"] = round(time.perf_counter() - t1, 1)
            page.get_by_role("button", name="Try again").click()
            page.get_by_role("button", name="Try again").wait_for(state="detached", timeout=ms)
            page.wait_for_function(ENDED, timeout=ms)
            if page.get_by_role("button", name="Try again").count():
                raise AssertionError("Try again failed too: " + " | ".join(page.locator(ALERTS).all_inner_texts()))
        out["click_to_picture_s"] = round(time.perf_counter() - t1, 1)
    page.wait_for_function(PICTURES_LOADED, arg=n, timeout=ms)
    body = page.inner_text("body")
    if "Something went wrong" in body or "Traceback" in body:
        raise AssertionError("the page shows an error")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--timeout", type=float, default=300, help="seconds any one wait may take")
    ap.add_argument("--shots", default="deploy/out", help="folder for a screenshot of each page checked")
    sub = ap.add_subparsers(dest="check", required=True)
    sub.add_parser("start")
    see = sub.add_parser("see")
    see.add_argument("--class", dest="cls", type=int, default=437)
    see.add_argument("--method", default="natural")
    see.add_argument("--seed", type=int, default=0)
    see.add_argument("--n", type=int, default=1, help="pictures (seeds from --seed on): each is a job")
    see.add_argument("--expect", choices=["saved", "made", "followed", "any"], default="any")
    see.add_argument("--during", help="a shell command run once the picture is being made (a fault to try)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    url = args.url.rstrip("/")
    global SHOTS
    shots = SHOTS = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        shot = shots / f"{args.check}-{int(time.time())}.png"
        try:
            if args.check == "start":
                out = start_page(page, url, args.timeout)
            else:
                out = see_a_class(page, url, args.cls, args.method, args.seed, args.expect, args.timeout, args.during, args.n)
            ok = True
        except Exception as e:  # noqa: BLE001 - one line for the script that called us, and the screenshot
            out, ok = {"check": args.check, "failed": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}, False
        page.screenshot(path=str(shot), full_page=True)
        out["screenshot"] = str(shot)
        browser.close()
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
