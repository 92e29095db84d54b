"""Image quality per method, the real Lucent included, in one run on one machine.

    python bench/quality.py --classes report --seeds 0,1,2 --threads 1       # the issue's closing figures
    python bench/quality.py --classes tune --seeds 0 --methods fourier,lucent  # for tuning
    python bench/quality.py --classes tench,koala --methods pretrained,lucent,lucent64,lucent@128
    python bench/quality.py --methods pretrained,pretrained=my_decoder.safetensors   # two decoders

Methods: every dgncore preset by name (``dgncore.drawing.presets.PRESETS``: pretrained, untrained,
pixel, fourier, the paper presets and any added later) and the peer ``lucent[STEPS][@SIZE]``
(torch-lucent's ``render_vis``, default 256 steps at 224 px; ``lucent64``, ``lucent@128``);
Lucent runs with the same seed at one size share one optimisation (a 64-step run is the
first 64 steps of the 256-step one). For each class and seed the methods run back to back
in random order, so the machine's load hits them alike.

Per image: seconds, steps, p_target and rank under EfficientNet-Lite0 on the saved 8-bit
PNG (reloaded; dgncore's own scoring, for Lucent's images too), the held-out
EfficientNet-Lite2's rank of the target (top-1 / top-5), and the plausibility rank
(``dgncore.evaluation``: the class's real photo among all photos of ``--photos``, by
cosine similarity of Lite2's penultimate features; 1 = nearest). Per method: median
seconds per image and its ratio to Lucent's, share with p >= 0.9, Lite2 top-1 / top-5,
median plausibility rank, diversity across seeds. Writes the images, ``quality.json``
and contact sheets (methods x classes, one per seed, with a row of the real photos) to
``--out`` (default ``bench/results/quality``: git-ignored; the sheets hold ImageNet
photos and must never be committed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import torch  # noqa: E402
from peers import install_shims, parse_peer, run_lucent  # noqa: E402  (imports lucent only when run)
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from dgncore.data import (
    load_for_model,  # noqa: E402
    load_image,  # noqa: E402
)
from dgncore.drawing.objectives import Target  # noqa: E402
from dgncore.drawing.optimize import optimize  # noqa: E402
from dgncore.drawing.presets import Preset  # noqa: E402
from dgncore.drawing.registry import (  # noqa: E402
    METHODS,
    PRESETS,
    make_preset,  # noqa: E402
)
from dgncore.errors import InputError  # noqa: E402
from dgncore.evaluation import (  # noqa: E402
    DEFAULT_PHOTOS,
    PhotoBank,
    diversity,
    judge_images,
    load_judge,
    photo_bank,
)
from dgncore.models.classifiers import Classifier, load_classifier  # noqa: E402
from dgncore.results import save_result  # noqa: E402
from dgncore.runs import class_targets, generate  # noqa: E402

#: classes to tune on (all from the photos' training split)
TUNE = ["tench", "koala", "goldfinch", "carton", "ski", "hummingbird", "daisy", "volcano"]
#: the closing figures' classes: every 6th of the 95 held-out photos (dgncore.data.holdout_split); never tuned on
REPORT = ["house finch", "wolf spider", "ruddy turnstone", "West Highland white terrier", "miniature poodle", "sea cucumber",
          "barracouta", "bookcase", "cradle", "gown", "matchstick", "pay-phone", "rule", "submarine", "warplane", "pomegranate"]
CLASS_SETS = {"tune": TUNE, "report": REPORT}
#: presets that draw through a decoder file, which ``PRESET=FILE`` replaces
METHODS_WITH_DECODER = tuple(n for n in PRESETS if make_preset(n).checkpoint)
OUT = ROOT / "bench" / "results" / "quality"
P_OK = 0.9


@dataclass(frozen=True)
class Method:
    name: str
    preset: Preset | None = None  # ours
    steps: int = 0  # peers
    size: int = 0

    @property
    def is_peer(self) -> bool:
        return self.preset is None


def parse_methods(text: str) -> list[Method]:
    """Method names: our presets (``PRESET``, ``PRESET:STEPS``, and for the decoder methods
    ``PRESET[:STEPS]=DECODER_FILE``), each optionally followed by ``+KEY=VALUE`` preset
    settings (``natural:96+views=2``), and the peers (``lucent[STEPS][@SIZE]``)."""
    out = []
    for name in dict.fromkeys(m.strip() for m in text.split(",") if m.strip()):
        peer = parse_peer(name)
        if peer:
            out.append(Method(name, None, *peer))
            continue
        name, *settings = name.split("+")
        spec, _, decoder = name.partition("=")
        preset, _, steps = spec.partition(":")
        if preset.lower() not in PRESETS or (steps and not steps.isdigit()) or (decoder and preset.lower() not in METHODS_WITH_DECODER):
            raise InputError(f"unknown method {name!r}: choose from {', '.join(PRESETS)} (or PRESET:STEPS, pretrained=DECODER_FILE), "
                             "lucent, lucent64, lucent@128")
        if decoder and not Path(decoder).is_file():
            raise InputError(f"no decoder file {decoder!r}")
        label = preset + (f"-{steps}" if steps else "") + (f"-{Path(decoder).stem}" if decoder else "") + "".join(f"-{s}" for s in settings)
        overrides: dict[str, Any] = {"checkpoint": decoder} if decoder else {}
        for setting in settings:
            key, eq, value = setting.partition("=")
            if not eq:
                raise InputError(f"write a preset setting as +KEY=VALUE, got {setting!r}")
            overrides[key] = _value(value)
        out.append(Method(label, make_preset(preset, steps=int(steps) if steps else None, **overrides)))
    if not out:
        raise InputError("no methods given")
    return out


def _value(text: str) -> Any:
    """A preset setting's value as written on the command line: a number, true/false, or a word."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_classes(text: str, clf: Classifier) -> list[Target]:
    names = CLASS_SETS.get(text.strip().lower())
    return class_targets(clf, ",".join(names) if names else text)


def file_digest(path: str | None) -> dict[str, str] | None:
    if not path or not Path(path).is_file():
        return None
    return {"file": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]}


# --------------------------------------------------------------------------- running


def run_ours(clf: Classifier, m: Method, t: Target, seed: int, out: Path) -> dict[str, Any]:
    assert m.preset is not None
    stem = f"{t.slug}_s{seed}"
    rec = generate(clf, [t], m.preset, out / m.name, seed=seed, stems=[stem], reuse=False)[0]
    return {"method": m.name, "seconds": rec["seconds"], "steps": rec["steps"], "p_target": rec["p_target"],
            "rank": rec["rank"], "png": str((out / m.name / rec["png"]).relative_to(out))}


def run_peers(clf: Classifier, group: list[Method], t: Target, seed: int, out: Path) -> list[dict[str, Any]]:
    """One Lucent optimisation for every step count of ``group`` (same size), each image
    saved and scored the way ours are (dgncore.results.save_result)."""
    run = run_lucent(clf, t.units[0], seed=seed, steps=[m.steps for m in group], size=group[0].size)
    rows = []
    for m in group:
        meta = {"model": clf.name, "method": m.name, "peer": "torch-lucent 0.1.8 render_vis", "seed": seed, "steps": m.steps,
                "steps_max": m.steps, "seconds": round(run.seconds[m.steps], 3), "size": m.size, "device": str(clf.device)}
        rec = save_result(out / m.name, f"{t.slug}_s{seed}", run.images[m.steps][0], clf, t, meta)
        rows.append({"method": m.name, "seconds": rec["seconds"], "steps": m.steps, "p_target": rec["p_target"],
                     "rank": rec["rank"], "png": str((out / m.name / rec["png"]).relative_to(out))})
    return rows


def warm_up(clf: Classifier, methods: list[Method], t: Target) -> None:
    """Each method's shapes once (kernel choices, the decoder's first load), untimed."""
    for m in methods:
        if m.preset is not None:
            optimize(clf, [t], m.preset.replace(steps=2, early_stop=None), check_every=1)
    for size in {m.size for m in methods if m.is_peer}:
        run_lucent(clf, t.units[0], steps=(2,), size=size)


def measure(clf: Classifier, methods: list[Method], targets: list[Target], seeds: list[int], bank: PhotoBank | None,
            out: Path, rng: random.Random) -> list[dict[str, Any]]:
    units: list[list[Method]] = [[m] for m in methods if not m.is_peer]
    for size in dict.fromkeys(m.size for m in methods if m.is_peer):
        units.append([m for m in methods if m.is_peer and m.size == size])
    lite2 = load_judge(str(clf.device))
    rows = []
    for t in targets:
        for seed in seeds:
            rng.shuffle(units)
            for unit in units:
                got = run_peers(clf, unit, t, seed, out) if unit[0].is_peer else [run_ours(clf, unit[0], t, seed, out)]
                for r in got:
                    (j,) = judge_images(load_image(out / r["png"]), [t.units[0]], bank, lite2)
                    r.update({"class": t.units[0], "label": t.label, "seed": seed, "lite2_rank": j.rank, "lite2_p": round(j.p, 6),
                              "lite2_top1": j.top1, "lite2_top5": j.top5, "plausibility": j.plausibility,
                              "_embedding": j.embedding})  # for diversity; not written to the JSON
                    rows.append(r)
                    print(f"  {r['method']:<12} {t.label[:16]:<16} s{seed} {r['seconds']:6.1f}s {r['steps']:>4}st p={r['p_target']:.3f} "
                          f"L2 rank {j.rank:<4} plaus {j.plausibility}", file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------------------- summary


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarise(rows: list[dict[str, Any]], methods: list[Method]) -> list[dict[str, Any]]:
    peers = [m.name for m in methods if m.is_peer]
    ref = "lucent" if "lucent" in peers else (peers[0] if peers else None)
    ref_s = median([r["seconds"] for r in rows if r["method"] == ref]) if ref else float("nan")
    out = []
    for m in methods:
        rs = [r for r in rows if r["method"] == m.name]
        plaus = [r["plausibility"] for r in rs if r["plausibility"] is not None]
        divs = []
        for c in dict.fromkeys(r["class"] for r in rs):
            embs = [r["_embedding"] for r in rs if r["class"] == c]
            divs.append(diversity(embs))
        dists = [d.mean_distance for d in divs if d.mean_distance is not None]
        s = median([r["seconds"] for r in rs])
        out.append({
            "method": m.name, "images": len(rs), "median_s": s, "vs_lucent": s / ref_s if ref_s == ref_s and ref_s > 0 else None,
            "reference": ref, "p_ok": sum(r["p_target"] >= P_OK for r in rs), "median_steps": median([r["steps"] for r in rs]),
            "lite2_top1": sum(r["lite2_top1"] for r in rs), "lite2_top5": sum(r["lite2_top5"] for r in rs),
            "median_plausibility": median(plaus), "with_photo": len(plaus),
            "diversity": statistics.fmean(dists) if dists else None,
            "near_duplicates": sum(d.near_duplicates for d in divs), "pairs": sum(d.pairs for d in divs),
        })
    return out


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or x != x else format(x, spec)


def print_tables(rows: list[dict[str, Any]], summary: list[dict[str, Any]], seeds: list[int]) -> None:
    methods = [s["method"] for s in summary]
    print(f"\n## Per class: Lite2 top-1 over seeds, median plausibility rank (r), median seconds ({len(seeds)} seed(s))")
    col = max(17, *(len(m) + 2 for m in methods))  # whole method names: +KEY=VALUE variants differ at the end
    print(f"{'class':<18}" + "".join(f"{m:>{col}}" for m in methods))
    for c in dict.fromkeys(r["class"] for r in rows):
        cells = []
        for m in methods:
            rs = [r for r in rows if r["class"] == c and r["method"] == m]
            pl = [r["plausibility"] for r in rs if r["plausibility"] is not None]
            cells.append(f"{sum(r['lite2_top1'] for r in rs)}/{len(rs)} r{fmt(median(pl), '.0f')} {median([r['seconds'] for r in rs]):.1f}s")
        print(f"{next(r['label'] for r in rows if r['class'] == c)[:17]:<18}" + "".join(f"{x:>{col}}" for x in cells))
    ref = next((s["reference"] for s in summary if s["reference"]), None)
    print("\n## Per method (p on the saved PNG under Lite0; L2 = EfficientNet-Lite2; plausibility: rank of the class's photo, 1 = nearest)")
    w = max(11, len(ref or "") + 5)
    mw = max(14, *(len(m) + 1 for m in methods))
    print(f"{'method':<{mw}}{'images':>7}{'med s':>8}{'vs ' + (ref or 'lucent'):>{w}}{'p>=0.9':>8}{'med st':>7}{'L2 top1':>8}{'L2 top5':>8}"
          f"{'plaus med':>10}{'divers.':>8}{'near-dup':>9}")
    for s in summary:
        n = s["images"]
        print(f"{s['method']:<{mw}}{n:>7}{s['median_s']:>8.1f}{fmt(s['vs_lucent'], '.2f'):>{w}}{s['p_ok']:>5}/{n:<2}{fmt(s['median_steps'], '.0f'):>7}"
              f"{s['lite2_top1']:>5}/{n:<2}{s['lite2_top5']:>5}/{n:<2}{fmt(s['median_plausibility'], '.1f'):>10}"
              f"{fmt(s['diversity'], '.3f'):>8}{s['near_duplicates']:>5}/{s['pairs']:<3}")


# --------------------------------------------------------------------------- contact sheet


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the bitmap font
        return ImageFont.load_default()


def contact_sheet(rows: list[dict[str, Any]], summary: list[dict[str, Any]], seed: int, bank: PhotoBank | None, out: Path,
                  cell: int = 128) -> Path:
    """Rows = methods (and the real photo where the class has one), columns = classes, for
    one seed; under each image: Lite0 p, Lite2 top-1/top-5 (T1/T5) and plausibility rank."""
    methods = [s["method"] for s in summary]
    classes = list(dict.fromkeys((r["class"], r["label"]) for r in rows))
    label_w, head_h, cap_h, pad = 170, 34, 16, 4
    n_rows = len(methods) + (1 if bank is not None else 0)
    sheet = Image.new("RGB", (label_w + len(classes) * (cell + pad), head_h + n_rows * (cell + cap_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    small, big = _font(11), _font(13)
    draw.multiline_text((4, 2), f"seed {seed}; under each image: Lite0 p,\nT1/T5 = Lite2 top-1/5, plaus rank", fill="dimgray", font=_font(9), spacing=1)
    for k, (_c, label) in enumerate(classes):
        x = label_w + k * (cell + pad)
        words, lines = label.split(), [""]
        for w in words:  # wrap the class name into the column
            if draw.textlength((lines[-1] + " " + w).strip(), font=small) > cell and lines[-1]:
                lines.append(w)
            else:
                lines[-1] = (lines[-1] + " " + w).strip()
        draw.multiline_text((x, 2), "\n".join(lines[:2]), fill="black", font=small, spacing=1)
    for i, name in enumerate(methods + (["real photo"] if bank is not None else [])):
        y = head_h + i * (cell + cap_h + pad)
        s = next((s for s in summary if s["method"] == name), None)
        draw.text((4, y + 4), name, fill="black", font=big)
        if s is not None:
            n = s["images"]
            draw.multiline_text((4, y + 24), f"all seeds:\nLite2 top-1 {s['lite2_top1']}/{n}\nplaus. median {fmt(s['median_plausibility'], '.1f')}\n"
                                f"{s['median_s']:.1f} s / image", fill="dimgray", font=small, spacing=2)
        for k, (c, _label) in enumerate(classes):
            x = label_w + k * (cell + pad)
            if name == "real photo":
                photos = bank.photos(c) if bank is not None else []
                if photos:
                    sheet.paste(_to_pil(load_for_model(photos[0], cell)), (x, y))
                continue
            r = next((r for r in rows if r["method"] == name and r["class"] == c and r["seed"] == seed), None)
            if r is None:
                continue
            sheet.paste(_to_pil(load_image(out / r["png"], size=cell)), (x, y))
            tag = "T1" if r["lite2_top1"] else "T5" if r["lite2_top5"] else "--"
            draw.text((x, y + cell + 1), f"p {r['p_target']:.2f}  {tag}  plaus {r['plausibility'] if r['plausibility'] is not None else '-'}",
                      fill="black", font=small)
    path = out / f"sheet_seed{seed}.png"
    sheet.save(path)
    return path


def _to_pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray((img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default="tune", help="tune, report, or a comma list of class names / indices")
    ap.add_argument("--seeds", default="0", help="comma list, e.g. 0,1,2")
    ap.add_argument("--methods", default=",".join([*METHODS, "lucent"]),
                    help=f"comma list of dgncore presets ({', '.join(PRESETS)}) and lucent[STEPS][@SIZE] (lucent, lucent64, lucent@128)")
    ap.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="photo folder for plausibility (<wnid>_<name> files)")
    ap.add_argument("--early-stop", default=None, help="override our presets' early-stop probability (none: run every step)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default; 1 is steadier on a busy machine)")
    ap.add_argument("--order-seed", type=int, default=0, help="seed of the random method order")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        methods = parse_methods(args.methods)
        if args.early_stop is not None:
            stop = None if args.early_stop.lower() == "none" else float(args.early_stop)
            methods = [Method(m.name, m.preset.replace(early_stop=stop)) if m.preset else m for m in methods]
        clf = load_classifier("efficientnet_lite0", device=args.device)
        targets = parse_classes(args.classes, clf)
        if any(m.is_peer for m in methods):
            install_shims()
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("# contact sheets here hold ImageNet photos: never commit this folder\n*\n")
    bank = None
    if Path(args.photos).is_dir():
        print(f"photo bank {args.photos} (embedded once, then cached) ...", file=sys.stderr, flush=True)
        bank = photo_bank(args.photos, load_judge(str(clf.device)), progress=lambda i, n: print(f"\r  {i}/{n}", end="", file=sys.stderr, flush=True))
        print(file=sys.stderr)
    else:
        print(f"warning: no photo folder at {args.photos}: no plausibility ranks", file=sys.stderr)
    load0 = os.getloadavg()[0]
    print(f"# bench/quality.py  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  device {clf.device}"
          f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)  load avg {load0:.1f}")
    print(f"# {len(targets)} classes x seeds {seeds} x {', '.join(m.name for m in methods)}")
    warm_up(clf, methods, targets[0])
    t0 = time.time()
    rows = measure(clf, methods, targets, seeds, bank, out, random.Random(args.order_seed))
    summary = summarise(rows, methods)
    print_tables(rows, summary, seeds)
    sheets = [contact_sheet(rows, summary, s, bank, out) for s in seeds]
    print(f"\n# {time.time() - t0:.0f} s; load avg {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; contact sheets: "
          + ", ".join(str(p) for p in sheets))
    record = {
        "time": time.strftime("%Y-%m-%d %H:%M"), "args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "device": str(clf.device), "load_avg": [load0, os.getloadavg()[0]], "photos": bank.key if bank else None,
        "presets": {m.name: m.preset.to_dict() for m in methods if m.preset},
        "decoders": {m.name: file_digest(m.preset.checkpoint) for m in methods if m.preset and m.preset.checkpoint},
        "summary": summary, "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
    }
    (out / "quality.json").write_text(json.dumps(record, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
