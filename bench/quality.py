"""Per-class quality table for the core issue: for each method, seconds per image,
p_target and rank on the saved PNG (EfficientNet-Lite0), and how often the held-out
EfficientNet-Lite2 puts the target in its top 1 / top 5. One script run, same machine.

    python bench/quality.py --out bench/results/quality [--methods pretrained,untrained,pixel,fourier]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import sys

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgncore.api import generate, make_preset
from dgncore.classifiers import load_classifier
from dgncore.data import load_image
from dgncore.objectives import parse_target

CLASSES = ["tench", "goldfinch", "tabby", "volcano", "pizza", "daisy", "school bus", "espresso"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench/results/quality")
    ap.add_argument("--methods", default="pretrained,untrained,pixel,fourier")
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1, help="targets per run (1 = what a user waits for)")
    args = ap.parse_args()
    clf = load_classifier("efficientnet_lite0")
    held_out = load_classifier("efficientnet_lite2")
    targets = [parse_target(f"class:{c}", clf) for c in args.classes.split(",")]
    rows = []
    for method in args.methods.split(","):
        preset = make_preset(method)
        out = Path(args.out) / method
        recs = []
        for i in range(0, len(targets), args.batch):
            recs += generate(clf, targets[i : i + args.batch], preset, out, seed=args.seed, reuse=False)
        for t, r in zip(targets, recs):
            img = load_image(out / r["png"])
            with torch.inference_mode():
                order = torch.argsort(held_out.logits(img[None])[0], descending=True)[:5].tolist()
            rows.append({"method": method, "class": t.label, "seconds": r["seconds"], "steps": r["steps"],
                         "p_target": r["p_target"], "rank": r["rank"],
                         "lite2_top1": int(order[0] == t.units[0]), "lite2_top5": int(t.units[0] in order)})
    print(f"{'method':<11} {'class':<12} {'s/img':>6} {'steps':>5} {'p_target':>8} {'rank':>4} {'L2top1':>6} {'L2top5':>6}")
    for r in rows:
        print(f"{r['method']:<11} {r['class'][:12]:<12} {r['seconds']:>6.1f} {r['steps']:>5} {r['p_target']:>8.3f} {r['rank']:>4} {r['lite2_top1']:>6} {r['lite2_top5']:>6}")
    print("\nper method: mean s/img, share p>=0.9, median p, Lite2 top-1 / top-5")
    for m in args.methods.split(","):
        rs = [r for r in rows if r["method"] == m]
        ps = sorted(r["p_target"] for r in rs)
        print(f"{m:<11} {sum(r['seconds'] for r in rs) / len(rs):6.1f}s  {sum(p >= 0.9 for p in ps)}/{len(rs)}  "
              f"{ps[len(ps) // 2]:.3f}  {sum(r['lite2_top1'] for r in rs)}/{len(rs)}  {sum(r['lite2_top5'] for r in rs)}/{len(rs)}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "quality.json").write_text(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
