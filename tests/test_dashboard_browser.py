"""End to end in a real browser: ``python -m streamlit run dashboard/app.py`` on a free
localhost port, driven by Debian's headless Chromium through Playwright. A first visit
is scripted as a new user would make it (start page, pick a class, Generate, share the
link); each page is opened, one small generation runs, an <img> must appear, and a
screenshot is saved under ``screenshots/`` (git-ignored) for a person to look at, in
local and in hosted mode.

Tiny settings travel in the URL (?method=pixel&steps=2&size=64), exactly as a shared
link would. Skipped, with the reason, where Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DGN_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "screenshots"
FAST = "method=pixel&steps=2&size=64"
RUN_TIMEOUT_MS = 180_000
pytestmark = pytest.mark.slow  # a browser and a server per test

if not Path(CHROMIUM).is_file():
    pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")
PlaywrightTimeout = sync_api.TimeoutError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def planted_cache(tmp: Path) -> Path:
    """A DGN_CACHE for the server holding the built-in planted model: the trained one when
    this machine has it (so the screenshots show the real demo), else a tiny one (about a
    second to train; the demo then runs the same, with a meaningless verdict)."""
    from dgncore.audit import planted as P

    cache = tmp / "cache"
    folder = cache / "planted" / P.DEFAULT.key()
    folder.parent.mkdir(parents=True)
    trained = P.cache_root() / P.DEFAULT.key()
    if (trained / "info.json").is_file():
        folder.symlink_to(trained, target_is_directory=True)
    else:
        P.ensure_planted(P.PlantedConfig(pool=64, steps=3, batch=16), root=folder, samples_per_class=2, evidence_per_class=4)
    return cache


def start_server(tmp: Path, **extra: str):
    """``python -m streamlit run dashboard/app.py`` (this interpreter's Streamlit, so a venv
    works unactivated) on a free port; yields its URL, folder and log."""
    port = _free_port()
    env = dict(os.environ, DGN_RESULTS=str(tmp / "results"), DGN_UPLOADS=str(tmp / "uploads"), DGN_CACHE=str(planted_cache(tmp)),
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("DGN_HOSTED", "DGN_MODELS", "DGN_EXAMPLES"):
        env.pop(name, None)
    env.update(extra)
    log = open(tmp / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"streamlit did not start:\n{(tmp / 'streamlit.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield {"url": url, "tmp": tmp, "log": tmp / "streamlit.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    """The same app as the Docker image runs it: hosted limits, results only under its folder."""
    tmp = tmp_path_factory.mktemp("hosted")
    yield from start_server(tmp, DGN_HOSTED="1", DGN_RESULTS_DIR=str(tmp / "results"))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


def new_page(browser, server):
    """A fresh browser (its own cookies and session) and a page; the server log and the
    page's JavaScript errors are checked when it closes."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 2000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert "Traceback" not in server["log"].read_text(), server["log"].read_text()[-3000:]
    assert not errors, errors


@pytest.fixture
def page(browser, server):
    yield from new_page(browser, server)


@pytest.fixture
def hosted_page(browser, hosted):
    yield from new_page(browser, hosted)


def shot(pg, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    return path


def open_page(pg, server, path: str, title: str):
    pg.goto(server["url"] + path)
    pg.get_by_role("heading", name=title).first.wait_for(timeout=90_000)
    idle(pg)


def idle(pg, timeout_ms: int = RUN_TIMEOUT_MS):
    """Wait until the script run has finished (Streamlit's status widget shows no 'Running')."""
    pg.wait_for_timeout(300)
    pg.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Stop')",
        timeout=timeout_ms,
    )
    # and the widgets are drawn (not the grey placeholders Streamlit shows while they mount)
    pg.wait_for_function("() => !document.querySelector('[data-testid^=\"stSkeleton\"]')", timeout=30_000)
    pg.wait_for_timeout(300)


IMG = '[data-testid="stMain"] [data-testid="stImage"] img'


def main_images(pg, at_least: int = 1, timeout_ms: int = 60_000):
    """The page's images, once at least ``at_least`` of them have loaded."""
    pg.wait_for_function(
        "([sel, n]) => [...document.querySelectorAll(sel)].filter(i => i.complete && i.naturalWidth > 0).length >= n",
        arg=[IMG, at_least], timeout=timeout_ms,
    )
    return pg.locator(IMG)


def loaded(img) -> bool:
    return img.evaluate("el => el.complete && el.naturalWidth > 0")


def button(pg, label: str):
    """An app button by its label (not a selectbox's "Open" toggle, not the header's Stop); a
    button's icon is part of its accessible name, so the label is matched as its last words."""
    name = re.compile(rf"(^|\s){re.escape(label)}$")
    return pg.locator('[data-testid="stButton"], [data-testid="stDownloadButton"]').get_by_role("button", name=name)


def generate(pg, wait_for: str = "PNG"):
    button(pg, "Generate").click()
    button(pg, wait_for).first.wait_for(timeout=RUN_TIMEOUT_MS)
    idle(pg)


def pick(pg, label: str, text: str):
    """Type ``text`` into the searchable select labelled ``label`` and take the first match."""
    box = pg.locator('[data-testid="stSelectbox"]').filter(has=pg.get_by_text(label, exact=True)).first
    for attempt in range(3):  # a rerun may redraw the select while we type: then type again
        box.locator("input").click()
        pg.keyboard.type(text)
        try:
            pg.locator('[role="option"]').first.wait_for(timeout=15_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            pg.keyboard.press("Escape")
            idle(pg)
    pg.keyboard.press("Enter")
    idle(pg)


# --------------------------------------------------------------------------- a first visit


def test_a_first_visit(page, server, browser):
    """Start page with examples -> See a class -> pick koala -> Generate (tiny settings under
    Advanced) -> an estimate in seconds -> the result with a second opinion -> Copy link ->
    the link in a fresh browser shows the same result."""
    open_page(page, server, "/", "DGN Explorer")
    examples = main_images(page, 6)
    assert examples.count() >= 6 and page.get_by_text("second network").first.is_visible()
    shot(page, "first-visit-1-start")
    page.locator('[data-testid="stPageLink"]').get_by_text("See a class", exact=True).first.click()
    page.get_by_role("heading", name="See a class").wait_for(timeout=60_000)
    idle(page)
    pick(page, "Class", "koala")
    assert "class=koala" in page.url
    # tiny settings, under Advanced: the Random generator, 40 steps, 64 px
    page.get_by_text("Advanced: method, steps, size, variant").click()
    idle(page)
    pick(page, "Method", "Random generator")
    steps = page.get_by_role("spinbutton", name="Steps (at most)")
    steps.fill("40")
    steps.press("Enter")
    idle(page)
    pick(page, "Picture size (px)", "64")
    estimate = page.get_by_text(re.compile(r"about \d+ s on this server|at most about \d+ s"))
    assert estimate.is_visible()
    shot(page, "first-visit-2-ready")
    button(page, "Generate").click()
    live = page.locator('[data-testid="stExpander"], [data-testid="stStatusWidget"], [data-testid="stMain"]').get_by_text(
        re.compile(r"about \d+ s left"))
    live.first.wait_for(timeout=60_000)  # the live view says how long is left, in seconds
    shot(page, "first-visit-3-running")
    button(page, "PNG").first.wait_for(timeout=RUN_TIMEOUT_MS)
    idle(page)
    second = page.get_by_text(re.compile(r"^A second network (agrees|half agrees|is not convinced): .*koala"))
    assert second.first.is_visible() and page.get_by_text(re.compile(r"koala, its \w+ guess")).first.is_visible()
    shot(page, "first-visit-4-result")
    button(page, "Copy link").click()
    link = page.locator('[data-testid="stDialog"] code').first
    link.wait_for(timeout=30_000)
    url = link.inner_text().strip()
    assert url.startswith(server["url"] + "/single?") and "class=koala" in url and "steps=40" in url
    shot(page, "first-visit-5-link")
    # someone else opens the link: the same picture, from disk
    for other in new_page(browser, server):
        other.goto(url)
        other.get_by_role("heading", name="See a class").wait_for(timeout=90_000)
        other.get_by_text("shown from disk").wait_for(timeout=90_000)
        assert loaded(main_images(other).first)
        assert other.get_by_text(re.compile(r"^A second network")).first.is_visible()
        shot(other, "first-visit-6-link-opened")


def test_a_first_visit_to_the_hosted_demo_lands_on_examples(hosted_page, hosted):
    open_page(hosted_page, hosted, "/", "DGN Explorer")
    assert main_images(hosted_page, 6).count() >= 6
    hosted_page.get_by_text("Browse the gallery").first.wait_for(timeout=30_000)
    assert str(hosted["tmp"]) not in hosted_page.locator('[data-testid="stSidebar"]').inner_text()  # no server paths
    shot(hosted_page, "hosted-start")
    open_page(hosted_page, hosted, "/gallery", "Gallery")
    assert main_images(hosted_page, 6).count() >= 6  # the examples: never an empty gallery
    shot(hosted_page, "hosted-gallery")


@pytest.mark.parametrize("path, title, name", [
    ("/single", "See a class", "single"), ("/compound", "Mix classes", "compound"), ("/layers", "Inside the layers", "layers"),
    ("/audit", "Audit a model", "audit-whole-model"), ("/audit?tab=Your+class+and+samples", "Audit a model", "audit-class-tab"),
])
def test_every_hosted_page_opens_on_something_to_do(hosted_page, hosted, path, title, name):
    open_page(hosted_page, hosted, path, title)
    assert hosted_page.locator('[data-testid="stException"]').count() == 0
    assert str(hosted["tmp"]) not in hosted_page.locator("body").inner_text()  # no server paths for visitors
    shot(hosted_page, f"hosted-{name}")


def test_single_class_page(page, server):
    open_page(page, server, f"/single?{FAST}&class=goldfish", "See a class")
    generate(page)
    imgs = main_images(page)
    assert imgs.count() >= 1 and loaded(imgs.first)
    assert page.get_by_text(re.compile(r"goldfish, its \w+ guess")).first.is_visible()
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
    shot(page, "single-class")
    # a reload (same link) shows the saved result again, from disk
    page.reload()
    page.get_by_text("shown from disk").wait_for(timeout=90_000)
    assert loaded(main_images(page).first)
    assert "class=goldfish" in page.url
    shot(page, "single-class-reloaded")


def test_stop_button_keeps_partial_result(page, server):
    # a filter target never stops early, so the run is still going when Stop is pressed
    open_page(page, server, "/layers?method=pixel&steps=3000&size=32&layers=blocks.1&filters=1", "Inside the layers")
    button(page, "Generate").click()
    main_images(page, 1, RUN_TIMEOUT_MS)  # the live image
    page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=60_000)  # and its curve
    page.get_by_text(re.compile(r"step \d+ of 3000 · about \d+ (s|min)")).first.wait_for(timeout=60_000)
    shot(page, "stop-running")
    button(page, "Stop").click()
    page.get_by_text("Stopped.").wait_for(timeout=RUN_TIMEOUT_MS)
    idle(page)
    assert loaded(main_images(page).first)
    shot(page, "stop-stopped")


def test_compound_page(page, server):
    open_page(page, server, f"/compound?{FAST}&c1=tench&c2=goldfish", "Mix classes")
    generate(page)
    imgs = main_images(page, 3)
    assert imgs.count() >= 3 and all(loaded(imgs.nth(i)) for i in range(3))
    shot(page, "compound")


def sample_folder(server) -> Path:
    """A tiny ImageFolder (two classes, three images each) in the server's temporary folder."""
    from PIL import Image

    ds = server["tmp"] / "dataset"
    for k, cls in enumerate(["tench", "goldfish"]):
        (ds / cls).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.new("RGB", (48, 48), (60 * k + 30 * i, 140, 90)).save(ds / cls / f"{i}.png")
    return ds


def test_layers_page(page, server):
    open_page(page, server, f"/layers?{FAST}&layers=blocks.1&filters=0&folder={sample_folder(server)}", "Inside the layers")
    generate(page, wait_for="Open")
    assert loaded(main_images(page).first)
    assert page.get_by_text("Real images that score highest for").is_visible()  # the folder's exemplars of the filter
    shot(page, "layers")
    button(page, "Open").first.click()  # a page of its own, with an address to share
    page.wait_for_url(re.compile(r"/gallery\?.*open="), timeout=60_000)
    page.get_by_role("button", name="Close").wait_for(timeout=60_000)
    idle(page)
    assert loaded(main_images(page).first)
    shot(page, "layers-open")


def test_bias_audit_page(page, server):
    ds = sample_folder(server)
    open_page(page, server, f"/audit?tab=Your+class+and+samples&{FAST}&folder={ds}", "Audit a model")
    page.get_by_text("The classifier's own view of these samples").wait_for(timeout=90_000)
    generate(page, wait_for="Download all as ZIP (1 picture, with their settings and scores)")
    # the result of an earlier test is on disk: wait for this run, not that one
    page.wait_for_function("() => !document.body.innerText.includes('waiting in the queue')", timeout=RUN_TIMEOUT_MS)
    idle(page)
    imgs = main_images(page, 4 + 6)  # generated, 3 samples, then 6 exemplars: top 3, bottom 3
    assert imgs.count() >= 10
    shot(page, "bias-audit")


WHOLE = "audit_methods=untrained&audit_prior=False"  # no prior to train: seconds, not minutes


def whole_report(pg, name: str):
    """Wait for the report, check its suspects table and charts, and save the whole page in one picture."""
    button(pg, "Report page (HTML)").wait_for(timeout=RUN_TIMEOUT_MS)
    idle(pg)
    pg.get_by_text("Suspects, most suspicious first").wait_for(timeout=60_000)
    assert pg.locator("table").first.get_by_text(re.compile(r"confirmed shortcut|suspected|none found")).count() >= 1
    pg.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=60_000)
    assert main_images(pg, 4).count() >= 4  # intervention pictures, generated images, samples, exemplars
    # the whole report in one picture (the page scrolls inside its main block, not the window)
    height = pg.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    pg.set_viewport_size({"width": 1400, "height": min(height + 40, 12000)})
    idle(pg)
    shot(pg, name)
    pg.set_viewport_size({"width": 1400, "height": 2000})


def test_whole_model_audit_of_the_demo(page, server):
    """The page leads with the whole-model audit of the built-in demo: Run, the step and the
    seconds left in it, the suspects first, the cue chart; a reload shows it again, from disk."""
    open_page(page, server, f"/audit?{WHOLE}&audit_seeds=0,1&audit_steps=30", "Audit a model")
    page.get_by_text("A test with a known answer").wait_for(timeout=60_000)
    shot(page, "audit-whole-demo-ready")
    button(page, "Run the audit").click()
    page.get_by_text(re.compile(r"Audit, step \d of \d: ")).first.wait_for(timeout=60_000)
    shot(page, "audit-whole-demo-running")
    whole_report(page, "audit-whole-demo")
    assert page.get_by_text("Pass rule, fixed before any run").is_visible()
    page.locator('[data-testid="stPlotlyChart"]').first.screenshot(path=str(SHOTS / "audit-whole-demo-chart.png"))
    page.reload()
    button(page, "Report page (HTML)").wait_for(timeout=90_000)
    idle(page)
    assert page.get_by_text("Suspects, most suspicious first").is_visible()


def test_whole_model_audit_of_your_model_on_a_folder(page, server):
    ds = sample_folder(server)
    open_page(page, server, f"/audit?{WHOLE}&audit_seeds=0&audit_steps=2&audit_of=The+sidebar%27s+model+on+your+images&audit_folder={ds}",
              "Audit a model")
    page.get_by_text("2 class folders").wait_for(timeout=60_000)
    button(page, "Run the audit").click()
    whole_report(page, "audit-whole-own-model")


def test_whole_model_audit_of_another_built_in_model_and_the_saved_list(page, server):
    """Another built-in model, then the saved audits: every report stays and reopens."""
    open_page(page, server, f"/audit?{WHOLE}&audit_seeds=0&audit_steps=2&audit_builtin=planted-control", "Audit a model")
    page.get_by_text(re.compile("a good audit finds no shortcut here")).first.wait_for(timeout=60_000)
    shot(page, "audit-whole-builtin-control")
    saved = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(re.compile(r"^Saved audits")))
    saved.locator("input").click()
    page.locator('[role="option"]').nth(1).click()  # the newest saved audit
    idle(page)
    assert "audit_open=" in page.url
    whole_report(page, "audit-whole-saved-reopened")


def test_gallery_page(page, server):
    # the earlier tests left results on disk; make sure there is at least one
    open_page(page, server, f"/single?{FAST}&class=tench", "See a class")
    generate(page)
    open_page(page, server, "/gallery?from=made+here", "Gallery")
    imgs = main_images(page)
    assert imgs.count() >= 1 and loaded(imgs.first)
    shot(page, "gallery")
    button(page, "Open").first.click()
    button(page, "Close").wait_for(timeout=60_000)
    idle(page)
    assert "open=" in page.url
    shot(page, "gallery-open")


def test_bad_input_shows_one_error(page, server):
    open_page(page, server, f"/?{FAST}&class=notaclassatall", "See a class")  # an old link: it still opens that page
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="unknown class")
    alert.first.wait_for(timeout=30_000)
    assert alert.count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, "bad-input")
