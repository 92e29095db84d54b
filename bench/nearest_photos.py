"""Does "nearest real photos" tell a likeness from a fooled score, where Lite2's probability does not?

    python bench/nearest_photos.py [--examples dashboard/examples] [--rescore] [--json out.json]

On the shipped examples (one picture per class per method, EfficientNet-Lite0, seed 0):
per method, Lite2's mean probability of the target and its top-1 share, and the photo
rank (where the class's own photo comes among the 950 sample photos nearest to the
picture in Lite2's features; 1 = nearest): median, and the share within the top 1 and
top 5. Then, class by class, which of two methods each measure prefers: a measure that
earns its place prefers the pictures a person names (``natural``) over the blobs
(``pretrained``) where the probability cannot tell them apart.

``--rescore`` first gives each example's JSON the second opinion as
:func:`dgncore.results.second_opinion` computes it now (nearest photos, photo rank),
from the stored picture as it is (nothing is drawn again), and rewrites each index.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rescore(root: Path) -> int:
    from dgncore.data import load_image, write_json
    from dgncore.drawing.objectives import parse_target
    from dgncore.models.classifiers import load_classifier
    from dgncore.result_files import read_result, write_index
    from dgncore.results import second_opinion

    n = 0
    folders = set()
    for path in sorted(root.rglob("*.json")):
        if path.name == "index.json":
            continue
        rec = read_result(path)
        if rec.get("target_kind") != "class":
            continue
        clf = load_classifier(rec["model"])
        image = load_image(path.parent / rec["png"])
        rec["second_opinion"] = second_opinion(clf, image, parse_target(rec["target"], clf))
        write_json(rec, path)
        folders.add(path.parent)
        n += 1
    for folder in folders:
        write_index(folder)
    return n


def summary(records: list[dict]) -> dict:
    ops = [r["second_opinion"] for r in records]
    ranks = [o["photo_rank"] for o in ops if o.get("photo_rank") is not None]
    return {
        "pictures": len(records),
        "lite2_p_mean": round(statistics.mean(o["p_target"] for o in ops), 3),
        "lite2_top1": round(sum(o["rank"] == 1 for o in ops) / len(ops), 3),
        "with_photo": len(ranks),
        "photo_rank_median": statistics.median(ranks) if ranks else None,
        "photo_top1": round(sum(r == 1 for r in ranks) / len(ranks), 3) if ranks else None,
        "photo_top5": round(sum(r <= 5 for r in ranks) / len(ranks), 3) if ranks else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=Path, default=ROOT / "dashboard" / "examples")
    ap.add_argument("--rescore", action="store_true")
    ap.add_argument("--better", default="natural", help="the method whose pictures a person names")
    ap.add_argument("--worse", default="pretrained", help="the method whose pictures are blobs")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.rescore:
        print(f"rescored {rescore(args.examples)} examples")
    from dgncore.result_files import scan_results

    by_method: dict[str, dict[str, dict]] = {}
    for rec in scan_results(args.examples):
        if rec.get("target_kind") == "class" and (rec.get("second_opinion") or {}).get("nearest") is not None:
            by_method.setdefault(rec["method"], {})[rec["target"]] = rec
    if not by_method:
        print("no example has nearest photos yet: run with --rescore")
        return 1
    out: dict = {"methods": {m: summary(list(recs.values())) for m, recs in sorted(by_method.items())}}
    for m, s in out["methods"].items():
        print(f"{m:>12}: {s}")
    good, bad = by_method.get(args.better, {}), by_method.get(args.worse, {})
    both = sorted(set(good) & set(bad))
    if both:
        def prefers(key) -> dict:
            wins = sum(key(good[t]) < key(bad[t]) for t in both)
            ties = sum(key(good[t]) == key(bad[t]) for t in both)
            return {"prefers_better": wins, "ties": ties, "prefers_worse": len(both) - wins - ties}

        big = float("inf")
        out["pairs"] = {
            "classes": len(both),
            "lite2_probability": prefers(lambda r: -r["second_opinion"]["p_target"]),
            "photo_rank": prefers(lambda r: r["second_opinion"].get("photo_rank") or big),
        }
        print(f"{args.better} vs {args.worse}, class by class: {out['pairs']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
