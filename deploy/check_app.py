"""What a visitor sees, checked in headless Chromium against a running app (a container or a stack).

    python deploy/check_app.py --url http://127.0.0.1:8501 start
    python deploy/check_app.py --url ... see [--class 437] [--method natural] [--seed 0] [--expect saved|made]

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
import shutil
import sys
import time
from pathlib import Path

PICTURES_LOADED = """n => [...document.querySelectorAll('[data-testid=stImage] img, [data-testid=stFullScreenFrame] img')]
    .filter(i => i.complete && i.naturalWidth > 32).length >= n"""


def start_page(page, url: str, timeout_s: float) -> dict:
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(PICTURES_LOADED, arg=3, timeout=timeout_s * 1000)
    return {"check": "start", "pictures_s": round(time.perf_counter() - t0, 1)}


def see_a_class(page, url: str, cls: int, method: str, seed: int, expect: str, timeout_s: float) -> dict:
    t0 = time.perf_counter()
    page.goto(f"{url}/single?class={cls}&method={method}&seed={seed}")
    generate = page.get_by_role("button", name="Generate")
    generate.wait_for(timeout=timeout_s * 1000)
    page.wait_for_function("() => /Not made yet|made before|ready-made example/.test(document.body.innerText)", timeout=timeout_s * 1000)
    text = page.inner_text("body")
    saved = "made before" in text or "ready-made example" in text
    out = {"check": "see", "class": cls, "method": method, "seed": seed, "was_saved": saved, "page_s": round(time.perf_counter() - t0, 1)}
    if expect == "saved" and not saved:
        raise AssertionError("the picture was not shown from disk: the page says it is not made yet")
    if expect == "made" and saved:
        raise AssertionError("the picture was already made: use another seed")
    if not saved:
        t1 = time.perf_counter()
        generate.click()
        page.get_by_role("button", name="Download all as ZIP").wait_for(state="visible", timeout=timeout_s * 1000)
        out["click_to_picture_s"] = round(time.perf_counter() - t1, 1)
    page.wait_for_function(PICTURES_LOADED, arg=1, timeout=timeout_s * 1000)
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
    see.add_argument("--expect", choices=["saved", "made", "any"], default="any")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    url = args.url.rstrip("/")
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        shot = shots / f"{args.check}-{int(time.time())}.png"
        try:
            if args.check == "start":
                out = start_page(page, url, args.timeout)
            else:
                out = see_a_class(page, url, args.cls, args.method, args.seed, args.expect, args.timeout)
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
