"""Dose-response of the bias audit on the planted cues: for each cue kind, its control
model (cue on 30% of every class) and its biased models at the correlation strengths of
``dgncore.audit.planted.STRENGTHS`` (share of 'triangle' images with the cue, 3% of the others'),
the cue score of each method's generated images (PASS: triangle's cue >= 2x and +0.005
above every other class at every seed) and the intervention's verdicts.

    python bench/audit_planted.py --out bench/results/planted [--cues stamp,stripes,sepia,sticker]

Models and priors are cached; an audit already on disk is reused. ``--prior control``
(default) gives every model of one cue kind the same dataset prior, trained on the
control model's sample folder (the cue on 30% of every class's images): the prior then
cannot differ between strengths, so the dose-response is the classifier's alone.
``--prior own`` trains one per model's own folder (what ``audit --train-prior`` does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgncore.audit import planted
from dgncore.audit.pipeline import audit
from dgncore.prior import dataset as prior_mod


def row(name: str, rep: dict) -> list[dict]:
    out = []
    ev = rep["builtin"]["shortcut_evidence"]
    iv = rep.get("intervention") or {"classes": {}}
    for m in rep["methods"]:
        cue = rep["cue"]["methods"][m]
        v = cue.get("verdict") or {}
        tri = iv["classes"].get("triangle", {})
        g = (tri.get("methods") or {}).get(m) or {}
        others = sorted({r["methods"][m]["verdict"] for c, r in iv["classes"].items() if c != "triangle" and m in r.get("methods", {})})
        out.append({
            "model": name, "method": m, "flip_with_cue": ev["flip_to_biased"], "acc_clean": ev["mean_accuracy_without_cue"],
            "cue_triangle": cue["summary"]["triangle"]["mean"], "cue_max_other": max(s["mean"] for c, s in cue["summary"].items() if c != "triangle"),
            "cue_pass": f"{v.get('passes', 0)}/{v.get('seeds', 0)}",
            "verdict_triangle": g.get("verdict", "-"), "G": g.get("rate"), "G_ci": g.get("ci"), "L": (tri.get("located_real") or {}).get("rate"),
            "other_classes": ",".join(others) or "-",
            "confirmed_others": [c for c, r in iv["classes"].items() if c != "triangle" and r["verdict"] == "confirmed shortcut"],
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/planted")
    ap.add_argument("--cues", default="stripes,sepia,sticker")
    ap.add_argument("--strengths", default=",".join(f"{s:g}" for s in planted.STRENGTHS))
    ap.add_argument("--methods", default="pretrained,untrained")
    ap.add_argument("--prior", choices=("control", "own", "none"), default="control")
    ap.add_argument("--prior-steps", type=int, default=prior_mod.DEFAULT_STEPS)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    for kind in args.cues.split(","):
        names = [f"planted-{kind}-control"] + [f"planted-{kind}@{s}" for s in args.strengths.split(",")]
        ckpt = None
        if args.prior == "control" and "pretrained" in args.methods:
            ctrl = planted.builtin(names[0])
            ckpt = prior_mod.train_prior(ctrl.samples, ctrl.config.size, steps=args.prior_steps, classifier=ctrl.classifier()).path
        for name in names:
            t0 = time.perf_counter()
            rep = audit(name, out / name, methods=args.methods.split(","), seeds=[0, 1, 2], samples=4, exemplars=3,
                        train_prior=args.prior == "own" and "pretrained" in args.methods, prior_steps=args.prior_steps, checkpoint=ckpt)
            for r in row(name, rep):
                r["seconds"] = round(time.perf_counter() - t0)
                rows.append(r)
                print(json.dumps(r), flush=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    print("\n| model | method | flip with cue | cue: triangle | cue: max other | cue PASS | intervention: triangle (G [95% CI], L) | other classes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        g = "-" if r["G"] is None else f"{r['G']:.2f} [{r['G_ci'][0]:.2f}-{r['G_ci'][1]:.2f}], L {r['L']:.2f}"
        print(f"| {r['model']} | {r['method']} | {r['flip_with_cue']:.2f} | {r['cue_triangle']:.4f} | {r['cue_max_other']:.4f} | {r['cue_pass']} | "
              f"{r['verdict_triangle']}: {g} | {r['other_classes']} |")


if __name__ == "__main__":
    main()
