"""Does the paper's method reach its targets with a prior trained on the audited data?

    python bench/prior_reach.py [--models planted,planted-stripes@0.9,...] [--threads 2] [--table]

For each built-in model: train its dataset prior (the default recipe of
:mod:`dgncore.prior.dataset`, timed; from the cache when it is there), then run the audit's
drawing (no intervention) with ``pretrained`` on that prior, ``untrained`` and ``pixel`` at
seeds 0-2, and read p(class) of every saved image. The rule, fixed before the first run
(issue 23, item 3): a class passes when on at least 2 of its 3 seeds ``pretrained``'s p is at
least 0.9 x the mean p of the best other method for that class; a model passes when all
its classes do. Prints one row per model (prior seconds, steps, why it stopped, classes
passing, worst class) and, with ``--table``, the markdown table for docs/audit.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgncore.audit.methods import DEFAULT_METHODS
from dgncore.audit.pipeline import audit

MODELS = "planted,planted-stripes@0.9,planted-sepia@0.9,planted-sticker@0.9,planted-invisible@0.9,planted-control"
#: the audit's other default methods (the registry's say)
OTHERS = tuple(m for m in DEFAULT_METHODS if m != "pretrained")
SHARE = 0.9
SEEDS_NEEDED = 2


def judge(generated: dict[str, dict[str, list[dict]]]) -> dict[str, dict]:
    """Per class: pretrained's p per seed, the best other method and its mean p, pass."""
    out = {}
    for c, rows in generated["pretrained"].items():
        ps = [float(r["p_target"]) for r in rows]
        means = {m: float(np.mean([r["p_target"] for r in generated[m][c]])) for m in OTHERS if m in generated}
        best = max(means, key=means.get)
        ok = sum(p >= SHARE * means[best] for p in ps)
        out[c] = {"pretrained": [round(p, 3) for p in ps], "best": best, "best_mean": round(means[best], 3), "seeds_ok": ok, "pass": ok >= SEEDS_NEEDED}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--out", type=Path, default=Path("bench/results/prior-reach"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        t0 = time.perf_counter()
        rep = audit(name, args.out / name, train_prior=True, intervention=None, methods=["pretrained", *OTHERS], seeds=[0, 1, 2], samples=0, exemplars=0)
        meta = json.loads(Path(rep["prior"]["checkpoint"]).with_suffix(".json").read_text(encoding="utf-8"))
        verdicts = judge(rep["generated"])
        worst = min(verdicts, key=lambda c: (verdicts[c]["seeds_ok"], min(verdicts[c]["pretrained"])))
        row = {"model": name, "prior_s": meta.get("seconds"), "cached": rep["prior"]["cached"], "steps": meta.get("steps_done"),
               "stopped": meta.get("stopped"), "heldout": meta.get("heldout_error"), "classes": verdicts,
               "passed": sum(v["pass"] for v in verdicts.values()), "n": len(verdicts), "worst": worst, "wall_s": round(time.perf_counter() - t0)}
        rows.append(row)
        print(f"{name}: prior {row['prior_s']} s{' (cached)' if row['cached'] else ''}, {row['steps']} steps ({row['stopped']}); "
              f"{row['passed']}/{row['n']} classes pass; worst {worst} {verdicts[worst]}", flush=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    if args.table:
        print("\n| model | prior: seconds, steps, why it stopped | classes passing | pretrained p per seed (best other's mean) |")
        print("|---|---|---|---|")
        for r in rows:
            cells = "; ".join(f"{c} {'/'.join(f'{p:.2f}' for p in v['pretrained'])} ({v['best_mean']:.2f})" for c, v in r["classes"].items())
            print(f"| {r['model']} | {r['prior_s']:.0f} s, {r['steps']}, {r['stopped']} | {r['passed']}/{r['n']} | {cells} |")
    return 0 if all(r["passed"] == r["n"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
