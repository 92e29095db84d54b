"""Attribution maps as a bias audit, beside DGN Explorer's own: Grad-CAM and Integrated Gradients (captum) on the planted cases.

    pip install captum==0.9.0          # bench/requirements.txt; not the app's
    python bench/attribution_peers.py [--cues stamp,stripes,sepia,sticker,invisible] [--strengths 0.5,0.7,0.9,0.98]
                                      [--n 100] [--out bench/results/attribution] [--json out.json] [--train-only] [--no-audit]
    python bench/attribution_peers.py --table out.json [more.json ...]    # the markdown tables of docs/audit.md

Auditors reach first for attribution maps (Adebayo et al., ICLR 2022, found they miss
unknown spurious cues). Here each map method gets the same cases as the audit: each cue
kind at each strength, its control model (the cue on 30% of every class), and a second
control trained with another seed for the false alarms. The rules were fixed before any
result was looked at, one per kind of cue, as an auditor holding the model, images of the
class and the control model would use the maps, on ``--n`` held-out 'triangle' images
that carry the cue:

- a cue with a place (``stamp``, ``sticker``): the share of the map's mass on the cue's
  pixels; *found* when the model's share is at least twice the control model's.
- a cue over the whole image (``stripes``, ``sepia``, ``invisible``): the share of the
  map's mass off the shape; *found* when the model's share is at least the control's
  plus 0.10 (a model that reads the cue looks away from the triangle).

The second control, judged by the same rule against the first, gives the false alarms.
Grad-CAM: captum's ``LayerGradCam`` on the last conv stage (8 x 8), positive part,
upsampled; Integrated Gradients: ``IntegratedGradients`` from a black image, 32 steps,
absolute values summed over colours. Models come from the planted cache (trained on
first use, one torch thread each, about a minute apiece). Beside them, the audit's own
verdict on 'triangle' for the same models, with no reference model: the intervention on
the ``untrained`` method's images, seeds 0-2, as ``bench/audit_planted.py`` runs it (about
20 s a model); "confirmed" counts as found, "suspected" is shown as such.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from unittest import mock

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgncore.audit import planted as P

PLACED = ("stamp", "sticker")
PLACE_RATIO = 2.0
WHOLE_MARGIN = 0.10
#: the held-out images' seed (the models train on seed 0's pool; the audit's evidence uses 12345)
IMAGES_SEED = 777


class _Normalised(nn.Module):
    """The planted net on [0, 1] images, as captum needs one module."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(P.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(P.STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def cases(cue: str, strengths: list[float]) -> dict[str, P.PlantedConfig]:
    control = P.config_for(cue, control=True)
    out = {"control": control, "control (seed 1)": dataclasses.replace(control, seed=1)}
    out.update({f"@{s:g}": P.config_for(cue, s) for s in strengths})
    return out


def held_out(cfg: P.PlantedConfig, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` triangle images with the cue, the cue's pixels and the shape's (each (n, 1, S, S))."""
    gen = torch.Generator().manual_seed(IMAGES_SEED)
    masks: list[torch.Tensor] = []
    real = P._shape_masks

    def spy(*a, **k):
        masks.append(real(*a, **k))
        return masks[-1]

    labels = torch.full((n,), cfg.biased_index)
    with mock.patch.object(P, "_shape_masks", spy):
        clean = P.render_clean(cfg, labels, gen)
    cued = P.add_cue(cfg, clean, gen)
    cue_pixels = ((cued - clean).abs().sum(1, keepdim=True) > 0.05).float()
    return cued, cue_pixels, (masks[-1] > 0.5).float()


def maps(module: nn.Module, images: torch.Tensor, target: int) -> dict[str, torch.Tensor]:
    """(n, 1, S, S) non-negative maps of each attribution method."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

    size = images.shape[-1]
    cam = LayerGradCam(module, module.net.features[-1]).attribute(images, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, (size, size), interpolate_mode="bilinear").clamp_min(0)
    ig = IntegratedGradients(module).attribute(images, baselines=torch.zeros_like(images), target=target, n_steps=32, internal_batch_size=max(64, len(images)))
    return {"grad-cam": cam.detach(), "integrated gradients": ig.abs().sum(1, keepdim=True).detach()}


def share(m: torch.Tensor, region: torch.Tensor) -> float:
    """Mean over images of the map's mass inside ``region``."""
    return float(((m * region).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp_min(1e-12)).mean())


def measure(cfg: P.PlantedConfig, images: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """The rule's statistic per attribution method for one model."""
    from dgncore.audit.planted import eager_classifier, ensure_planted

    model = ensure_planted(cfg)
    module = _Normalised(eager_classifier(model).model).eval()
    cued, cue_pixels, shape = images
    out = {}
    for name, m in maps(module, cued, cfg.biased_index).items():
        out[name] = share(m, cue_pixels) if cfg.cue in PLACED else share(m, 1 - shape)
    out["flip_to_triangle"] = model.info.get("shortcut_evidence", {}).get("flip_to_biased")
    return out


def audit_verdict(cfg: P.PlantedConfig, out: Path) -> dict:
    """The audit's verdict on the biased class (and any other class it confirms)."""
    from dgncore.audit.builtin import audit_builtin

    model = P.ensure_planted(cfg)
    rep = audit_builtin(out / cfg.key(), model=model, methods=["untrained"], seeds=[0, 1, 2], samples=4, exemplars=3)
    classes = (rep.get("intervention") or {}).get("classes", {})
    g = (classes.get(cfg.biased_class, {}).get("methods") or {}).get("untrained") or {}
    others = [c for c, r in classes.items() if c != cfg.biased_class and r.get("verdict") == "confirmed shortcut"]
    return {"verdict": g.get("verdict", "-"), "G": g.get("rate"), "confirmed_others": others}


def verdict(cue: str, model: float, control: float) -> str:
    if cue in PLACED:
        return "found" if model >= PLACE_RATIO * control else "none"
    return "found" if model >= control + WHOLE_MARGIN else "none"


METHODS = ("grad-cam", "integrated gradients")


def _cell(row: dict, m: str) -> str:
    if m == "audit":
        a = row.get("audit")
        return "-" if a is None else f"{a['verdict'].replace(' shortcut', '')}" + ("" if a["G"] is None else f" ({a['G']:.2f})") + (f", also {'/'.join(a['confirmed_others'])}" if a["confirmed_others"] else "")
    r = row.get(m)
    return "(the reference)" if r is None else f"{r['verdict']} ({r['statistic']:.3f} vs {r['control']:.3f})"


def tables(results: list[dict]) -> str:
    """Per cue kind, a row per model; then detections and false alarms per approach."""
    cues = {k: v for r in results for k, v in r["cues"].items()}
    out = []
    for cue, rows in cues.items():
        out += [f"**{cue}**", "", "| model | cue flips other shapes to triangle | Grad-CAM | Integrated Gradients | audit (G rate) |", "|---|---|---|---|---|"]
        out += [f"| {cue} {name} | {row['flip_to_triangle']:.0%} | {_cell(row, METHODS[0])} | {_cell(row, METHODS[1])} | {_cell(row, 'audit')} |"
                for name, row in rows.items()]
        out.append("")
    out += ["| kind | Grad-CAM: found / biased, false alarm | Integrated Gradients | audit: confirmed (suspected) / biased, on the controls |", "|---|---|---|---|"]
    for cue, rows in cues.items():
        biased = {n: r for n, r in rows.items() if n.startswith("@")}
        cells = [f"{sum(r[m]['verdict'] == 'found' for r in biased.values())}/{len(biased)}, {rows['control (seed 1)'][m]['verdict']}" for m in METHODS]
        audits = [r.get("audit") or {} for r in biased.values()]
        ctrl = [rows[n].get("audit", {}).get("verdict", "-").replace(" shortcut", "") for n in ("control", "control (seed 1)")]
        conf = sum(a.get("verdict") == "confirmed shortcut" for a in audits)
        sus = sum(a.get("verdict") == "suspected" for a in audits)
        out.append(f"| {cue} | {cells[0]} | {cells[1]} | {conf} ({sus})/{len(biased)}, {' / '.join(ctrl)} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cues", default=",".join(P.CUE_KINDS))
    ap.add_argument("--strengths", default=",".join(f"{s:g}" for s in P.STRENGTHS))
    ap.add_argument("--n", type=int, default=100, help="held-out triangle images per model")
    ap.add_argument("--train-only", action="store_true", help="only make sure the models are in the cache")
    ap.add_argument("--no-audit", action="store_true", help="attribution maps only")
    ap.add_argument("--out", type=Path, default=Path("bench/results/attribution"), help="the audits' report folders")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--table", type=Path, nargs="+", help="print the markdown tables of these results and stop")
    args = ap.parse_args()
    if args.table:
        print(tables([json.loads(p.read_text()) for p in args.table]))
        return 0
    torch.set_num_threads(1)
    strengths = [float(s) for s in args.strengths.split(",")]
    result: dict = {"rules": {"placed": f"cue share >= {PLACE_RATIO:g}x the control's", "whole": f"off-shape share >= control's + {WHOLE_MARGIN:g}"},
                    "n": args.n, "cues": {}}
    t0 = time.time()
    for cue in args.cues.split(","):
        configs = cases(cue, strengths)
        if args.train_only:
            for name, cfg in configs.items():
                P.ensure_planted(cfg)
                print(f"{cue} {name}: in the cache ({time.time() - t0:.0f} s)", flush=True)
            continue
        images = held_out(configs["control"], args.n)  # the same images for every model of a kind
        stats = {name: measure(cfg, images) for name, cfg in configs.items()}
        ref = stats["control"]
        rows = {}
        for name, s in stats.items():
            row: dict = {"flip_to_triangle": s["flip_to_triangle"]}
            if name != "control":
                row.update({m: {"statistic": round(s[m], 4), "control": round(ref[m], 4), "verdict": verdict(cue, s[m], ref[m])}
                            for m in ("grad-cam", "integrated gradients")})
            if not args.no_audit:
                row["audit"] = audit_verdict(configs[name], args.out)
            rows[name] = row
            cells = "  ".join(f"{m}: {row[m]['statistic']:.3f} vs {row[m]['control']:.3f} {row[m]['verdict']}"
                              for m in ("grad-cam", "integrated gradients") if m in row)
            audit = f"  audit: {row['audit']['verdict']} (G {row['audit']['G']}) others {row['audit']['confirmed_others']}" if "audit" in row else ""
            print(f"{cue:>9} {name:>16} (flips {s['flip_to_triangle']})  {cells}{audit}", flush=True)
        result["cues"][cue] = rows
    result["seconds"] = round(time.time() - t0, 1)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
