"""The front door and the docs: the README fits one screen with the three commands, every
relative link resolves, and the shipped examples are what the docs say."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "dashboard" / "examples"
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", ROOT / "dashboard" / "README.md", EXAMPLES / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_a_front_door_that_fits_one_screen():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 40
    commands = [line.strip() for line in text.splitlines() if line.startswith("    ")]
    assert commands == ["pip install -r requirements.txt", "python -m streamlit run dashboard/app.py",
                        "python -m pip install -r requirements-dev.txt && python -m pytest"]
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()  # what CI runs is the README's test command
    assert re.search(r"!\[[^\]]+\]\(docs/\w+\.png\)", text)  # one picture of real output


def test_the_map_of_the_house_names_every_module_of_the_core():
    """docs/architecture.md is the map a newcomer reads: a module it does not name is a room
    nobody can find."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [p.relative_to(ROOT).as_posix() for p in (ROOT / "dgncore").rglob("*.py")
               if p.name != "__init__.py" and p.name not in text]
    assert not missing, f"docs/architecture.md does not name {missing}"
    for part in ("models/", "prior/", "drawing/", "audit/", "serving/", "views/"):
        assert part in text


def test_every_relative_link_and_the_dockerfiles_reference_resolve():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not re.match(r"[a-z]+://", target):
                assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links to a missing {target}"
    for ref in re.findall(r"\(?(docs/[\w./-]+\.md)\)?", (ROOT / "Dockerfile").read_text()):
        assert (ROOT / ref).is_file(), ref


def test_the_examples_are_small_complete_and_each_has_a_second_opinion():
    files = [f for f in EXAMPLES.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 10 * 1024**2
    every = [(f, json.loads(f.read_text())) for f in EXAMPLES.glob("*/*.json") if f.name != "index.json" and f.parent.name != "audit-lite0"]  # (the audit: its own test)
    records = [r for f, r in every if f.parent.name != "layers"]
    atlas = [r for f, r in every if f.parent.name == "layers"]
    classes = (EXAMPLES / "classes.txt").read_text().strip().split(",")
    methods = {r["method"] for r in records}
    assert len(records) == len(classes) * len(methods) and len(methods) >= 2
    for rec in records:
        assert rec["png"].endswith(".webp") and "WEBP" in rec["scored_on"]
        assert rec["model"] == "efficientnet_lite0" and rec["second_opinion"]["model"] == "efficientnet_lite2"
        assert len(rec["second_opinion"]["nearest"]) == 3 and "photo_rank" in rec["second_opinion"]
    assert all((EXAMPLES / r["method"] / r["png"]).is_file() for r in records)
    # the layer page's atlas: the first 4 filters of each of Lite0's 7 stages, the default method
    from dgncore.drawing.registry import DEFAULT_METHOD

    assert sorted(r["target"] for r in atlas) == sorted(f"filter:blocks.{b}:{k}" for b in range(7) for k in range(4))
    assert {(r["method"], r["model"], r["png"][-5:]) for r in atlas} == {(DEFAULT_METHOD, "efficientnet_lite0", ".webp")}
    assert all((EXAMPLES / "layers" / r["png"]).is_file() and "WEBP" in r["scored_on"] for r in atlas)


def test_an_examples_scores_are_those_of_its_stored_file():
    from dgncore.data import load_image
    from dgncore.drawing.objectives import parse_target
    from dgncore.models.classifiers import load_classifier
    from dgncore.results import score_image, second_opinion

    path = sorted(EXAMPLES.glob("*/105_koala.json"))[0]
    rec = json.loads(path.read_text())
    clf = load_classifier("efficientnet_lite0", device="cpu")
    image = load_image(path.parent / rec["png"])
    target = parse_target(rec["target"], clf)
    assert abs(score_image(clf, image, target)["p_target"] - rec["p_target"]) < 1e-4
    op = second_opinion(clf, image, target)
    assert abs(op["p_target"] - rec["second_opinion"]["p_target"]) < 1e-4
    assert (op["nearest"], op["photo_rank"]) == (rec["second_opinion"]["nearest"], rec["second_opinion"]["photo_rank"])
