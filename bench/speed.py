"""Speed of the optimisation loop, against baselines and against this machine's limit.

    python bench/speed.py --quick --threads 1               # ~15 min on the 2-core dev box
    python bench/speed.py                                   # everything, default settings
    python bench/speed.py --only throughput --batches 1,4 --steps 10
    python bench/speed.py --only ttt --classes 8 --ttt-methods pretrained,pixel,fourier
    python bench/speed.py --only ttt --ttt-methods pretrained,fourier,lucent --threads 1  # the real Lucent as a peer
    python bench/speed.py --only ab                         # each speed switch off vs on
    python bench/speed.py --only batch --ttt-methods untrained,pixel,fourier

Sections (each figure is measured in this one run, on this machine, next to its baseline):

- ``throughput``: per preset and batch (1, 4, 16 targets): seconds per step of the real
  loop (``optimize``) and of the bare forward+backward of G + classifier on the same
  source at the same batch, interleaved; the loop's overhead over the bare pass; steps/s;
  seconds per image for the preset's full step count; FLOPs per step (FlopCounterMode,
  generator and classifier); achieved FLOP/s as a share of a large fp32 matmul timed next
  to each row; peak memory of the loop (in a fresh process).
- ``ab``: each speed switch (classifier BN folding + channels-last, generator
  channels-last, bf16 autocast, all threads vs one) off vs on, alternated step by
  step on the bare forward+backward.
- ``ttt``: time until the *saved* 8-bit PNG reaches p_target >= 0.9, per class, for each
  method at batch 1 (what a user waits for), the held-out EfficientNet-Lite2's top-1 /
  top-5 on that PNG and its plausibility rank (``dgncore.evaluation``); ``lucent`` in
  ``--ttt-methods`` runs the real Lucent (bench/peers.py) with the same checks.
- ``batch``: all ``--classes`` targets in one batch until each saved PNG reaches
  p_target (or the step budget), with finished targets leaving the batch vs staying in
  it, back to back: what gallery-style batch work gains from dropping finished rows.
- ``profile``: torch.profiler over a few loop steps per preset; self time grouped into
  depthwise / pointwise / generator convolutions, batch norm, activations, copies, ...;
  full tables go to ``bench/results/``.

Timings on a shared machine are noisy: every comparison is interleaved and reported as a
median and a ratio measured in the same run. Prints one table per section; ``--json``
also writes everything to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import torch  # noqa: E402
from peers import parse_peer  # noqa: E402  (lucent itself is imported only when a peer runs)

from dgncore.drawing.objectives import Objective, parse_target  # noqa: E402
from dgncore.drawing.optimize import build_source, optimize, use_bf16, view_batch  # noqa: E402
from dgncore.drawing.presets import Preset  # noqa: E402
from dgncore.drawing.registry import make_preset  # noqa: E402
from dgncore.models.classifiers import Classifier, load_classifier  # noqa: E402
from dgncore.paths import DEFAULT_DECODER  # noqa: E402

RESULTS = ROOT / "bench" / "results"
#: a spread of ImageNet classes (tench, goldfinch, tabby, volcano, pizza, daisy, school bus,
#: espresso, then more); ``--classes N`` takes the first N
CLASSES = [0, 11, 281, 980, 963, 985, 779, 967, 1, 130, 291, 340, 417, 850, 948, 430]


# --------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, n: int = 0, reps: int = 3) -> float:
    """Best of ``reps`` large fp32 matmuls (2048^2 on CPU, 8192^2 on CUDA), in GFLOP/s:
    the machine's practical limit now."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class PeakMemory:
    """Peak memory of a block above what the process held when it started, in MB: the
    CPU's resident set (Linux VmHWM, reset through /proc/self/clear_refs; falls back to
    ru_maxrss deltas) and, on CUDA, torch's max_memory_allocated."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu_mb = float("nan")
        self.gpu_mb = float("nan")

    def __enter__(self) -> "PeakMemory":
        self.reset_ok = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset_ok = True
        except OSError:
            import resource

            self.maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.rss0 = rss_kb()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.gpu0 = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.reset_ok:
            with open("/proc/self/status") as f:
                hwm = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
            self.cpu_mb = (hwm - self.rss0) / 1024
        else:
            import resource

            self.cpu_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.maxrss0) / 1024
        if self.device.type == "cuda":
            self.gpu_mb = (torch.cuda.max_memory_allocated(self.device) - self.gpu0) / 2**20


def memory_probe(name: str, b: int, args: argparse.Namespace) -> dict[str, float]:
    """Peak memory of one short loop run (3 steps) in a fresh process, so that memory this
    process's allocator already holds does not hide it: returns cpu_mb (peak resident set
    during the run above the set before it, with the classifier and source loaded), rss_mb
    (that set before it) and, on CUDA, gpu_mb (peak allocated by torch above before)."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--memprobe", f"{name}:{b}", "--device", args.device,
           "--threads", str(args.threads), "--decoder-width", str(args.decoder_width), "--check-every", str(args.check_every)]
    if args.decoder:
        cmd += ["--decoder", args.decoder]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
        return json.loads(line)
    except (subprocess.SubprocessError, IndexError, ValueError):
        return {}


def _memprobe_main(spec: str, args: argparse.Namespace) -> int:
    name, b = spec.rsplit(":", 1)
    clf = load_classifier("efficientnet_lite0", device=args.device)
    device = clf.device
    preset, _note = preset_for(name, args)
    p = preset.replace(steps=3, early_stop=None)
    targets = class_targets(clf, int(b))
    clf.fast_model  # built before the measurement, like in a warm app  # noqa: B018
    torch.manual_seed(0)
    build_source(p, int(b), device)  # loads (and caches) the decoder
    with PeakMemory(device) as pm:
        optimize(clf, targets, p, check_every=args.check_every)
    print(json.dumps({"cpu_mb": pm.cpu_mb, "rss_mb": pm.rss0 / 1024, "gpu_mb": pm.gpu_mb}))
    return 0


def class_targets(clf: Classifier, n: int) -> list:
    idx = CLASSES[:n]
    if n > len(CLASSES):  # more than the list: fill with an even spread of other classes
        extra = [i for i in range(3, clf.n_classes, max(1, clf.n_classes // n)) if i not in CLASSES]
        idx = CLASSES + extra[: n - len(CLASSES)]
    return [parse_target(f"class:{i}", clf) for i in idx]


def preset_for(name: str, args: argparse.Namespace) -> tuple[Preset, str]:
    """The preset, with a stand-in decoder when the trained one is not on disk (speed only:
    same shapes, random weights). Returns (preset, note)."""
    preset = make_preset(name)
    if preset.method != "pretrained":
        return preset, ""
    ckpt = Path(args.decoder or preset.checkpoint or DEFAULT_DECODER)
    if ckpt.is_file():
        return preset.replace(checkpoint=str(ckpt)), ""
    path = RESULTS / f"random_decoder_w{args.decoder_width:g}.safetensors"
    if not path.is_file():
        from dgncore.models.generators import N_FEATURES, Generator, GeneratorConfig
        from dgncore.prior.decoder import save_decoder

        RESULTS.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        cfg = GeneratorConfig(width=args.decoder_width, stages=6, out_size=224, running_stats=True)
        dec = Generator(cfg).eval()
        save_decoder(dec, torch.rand(N_FEATURES), path, {"generator": cfg.to_dict(), "note": "random stand-in for speed measurements only"})
    return preset.replace(checkpoint=str(path)), f"random decoder w{args.decoder_width:g}"


#: the bare step's bf16 autocast: None = as the loop decides (optimize.use_bf16: the
#: preset's setting on native-bf16 devices, or DGN_BF16); the ab section forces it on/off
BARE_BF16: dict[str, bool | None] = {"on": None}
#: the ab section's torch.compile switch: the bare step's G and classifier compiled by
#: inductor (the loop itself never compiles; this row is what decides whether it should)
BARE_COMPILE: dict[str, bool] = {"on": False}


def bare_step_fn(clf: Classifier, preset: Preset, n: int, device: torch.device) -> Callable[[], None]:
    """One bare forward+backward of the source (G) and the classifier, nothing else, for
    the rows the loop runs: ``n`` targets x ``preset.restarts`` starts, each seen in
    ``preset.views`` views."""
    torch.manual_seed(0)
    source = build_source(preset, n * preset.restarts, device)
    source.train()

    amp = use_bf16(preset, device) if BARE_BF16["on"] is None else BARE_BF16["on"]

    make, logits = source, clf.logits
    if BARE_COMPILE["on"]:  # each module on its own (one graph over both never finished tracing)
        torch._dynamo.reset()  # else the cache fills up across rows and falls back to eager; dynamic
        # shapes made inductor spend >15 min in sympy on the bf16 pretrained step
        make, logits = torch.compile(source, dynamic=False), torch.compile(clf.logits, dynamic=False)

    def step() -> None:
        if amp:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = logits(source.classifier_view(view_batch(make().float(), preset.views)))
        else:
            out = logits(source.classifier_view(view_batch(make(), preset.views)))
        out.float().sum().backward()

    return step


def count_flops(clf: Classifier, preset: Preset, n: int, device: torch.device) -> tuple[float, float]:
    """(total, generator) FLOPs of one bare step: source forward and backward, classifier
    forward and input gradient (of every view). The ``untrained`` rows' grouped G is counted as one G
    times n: torch's FlopCounterMode counts a grouped conv's weight gradient ``groups``
    times over (fixed upstream in pytorch/pytorch#183405)."""
    from torch.utils.flop_counter import FlopCounterMode

    n = n * preset.restarts  # rows: every start of every target
    grouped = preset.method == "untrained" and n > 1
    torch.manual_seed(0)
    source = build_source(preset, 1 if grouped else n, device)
    source.train()
    with FlopCounterMode(display=False) as gen:
        images = source()
        source.classifier_view(images).sum().backward()
    x = torch.rand(n * preset.views, 3, preset.generator.out_size, preset.generator.out_size, device=device, requires_grad=True)
    with FlopCounterMode(display=False) as cls:
        clf.logits(x).sum().backward()
    g = float(gen.get_total_flops()) * (n if grouped else 1)
    return g + float(cls.get_total_flops()), g


def fmt(x: float, spec: str = ".3g") -> str:
    return "-" if x != x else format(x, spec)


# --------------------------------------------------------------------------- throughput


def throughput(clf: Classifier, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    all_targets = class_targets(clf, max(args.batches))
    for name in args.presets:
        base, note = preset_for(name, args)
        for b in args.batches:
            targets = all_targets[:b]
            steps = args.steps
            p = base.replace(steps=steps, early_stop=None)
            # warm up: every shape once (oneDNN / cuDNN pick their kernels on first use)
            optimize(clf, targets, p.replace(steps=2), check_every=1)
            bare = bare_step_fn(clf, p, b, device)
            bare()
            loop_t, bare_t, mm = [], [], []
            for _ in range(args.repeats):
                order = ["loop", "bare"]
                random.shuffle(order)  # each pair runs back to back: its ratio shares the load
                for what in order:
                    if what == "loop":
                        sync(device)
                        t = time.perf_counter()
                        run = optimize(clf, targets, p, check_every=args.check_every)
                        sync(device)
                        loop_t.append((time.perf_counter() - t) / steps)
                        if min(run.steps) < steps:  # a per-step time is only one if every row ran every step
                            raise RuntimeError(f"{name} b{b}: rows stopped at {run.steps} of {steps} steps")
                    else:
                        sync(device)
                        t = time.perf_counter()
                        for _ in range(steps):
                            bare()
                        sync(device)
                        bare_t.append((time.perf_counter() - t) / steps)
                mm.append(matmul_gflops(device))
            flops, gflops_g = count_flops(clf, p, b, device)
            mem = memory_probe(name, b, args)
            lt, bt, mmg = statistics.median(loop_t), statistics.median(bare_t), statistics.median(mm)
            row = {
                "preset": name, "note": note, "batch": b, "loop_s_step": lt, "bare_s_step": bt,
                "overhead": statistics.median(x / y for x, y in zip(loop_t, bare_t)) - 1, "best_s_step": min(loop_t),
                "steps_per_s": 1 / lt, "image_steps_per_s": b / lt,
                "s_per_image": lt * base.steps / b, "preset_steps": base.steps,
                "gflop_step": flops / 1e9, "gflop_step_gen": gflops_g / 1e9,
                "gflops": flops / lt / 1e9, "matmul_gflops": mmg, "share_of_matmul": flops / lt / 1e9 / mmg,
                "peak_cpu_mb": mem.get("cpu_mb", float("nan")), "peak_gpu_mb": mem.get("gpu_mb", float("nan")),
                "rss_mb": mem.get("rss_mb", float("nan")),
                "loop_samples": loop_t, "bare_samples": bare_t,
            }
            rows.append(row)
            print(f"  {name} b{b}: loop {lt:.3f}s/step bare {bt:.3f}s/step overhead {row['overhead']:+.0%} "
                  f"{flops / 1e9:.1f} GFLOP/step {row['share_of_matmul']:.0%} of matmul", file=sys.stderr, flush=True)
    return rows


def ab(clf: Classifier, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Each speed switch off vs on: bare forward+backward steps (the only part a switch
    touches) alternated step by step, so each pair shares the machine's load."""

    from dgncore.drawing.methods import paper
    from dgncore.drawing.methods.paper import cached_decoder
    from dgncore.models import generators

    def set_gen_cl(on: bool) -> None:
        generators.CHANNELS_LAST = on
        cached_decoder.cache_clear()  # the cached decoder was built under the old setting

    n_threads = torch.get_num_threads()
    has_g = lambda p: p.method in (paper.PRETRAINED.name, paper.UNTRAINED.name)  # noqa: E731  (the methods that draw with G)
    # (label, switch(on), whether the switch acts when the source is built, which presets)
    switches: list[tuple[str, Callable[[bool], None], bool, Callable[[Preset], bool]]] = [
        ("classifier BN-fold + channels-last", lambda on: setattr(clf, "fast", on), False, lambda p: True),
        ("generator channels-last", set_gen_cl, True, has_g),
    ]
    switches.append(("bf16 autocast (Preset.bf16 / DGN_BF16)", lambda on: BARE_BF16.__setitem__("on", on), True, lambda p: True))
    switches.append(("torch.compile (G + classifier)", lambda on: BARE_COMPILE.__setitem__("on", on), True, lambda p: True))
    if device.type == "cpu" and n_threads > 1:  # not a code change: what the machine's load does to threads
        first = args.presets[0]
        switches.append((f"{n_threads} threads instead of 1", lambda on: torch.set_num_threads(n_threads if on else 1), False,
                         lambda p: p.name == first))
    if args.switches:
        switches = [s for s in switches if any(w.strip().lower() in s[0].lower() for w in args.switches.split(","))]
    rows = []
    for label, switch, build_time, wanted in switches:
        for name in args.presets:
            base, note = preset_for(name, args)
            if not wanted(base):
                continue
            for b in args.batches:
                p = base.replace(steps=args.steps, early_stop=None)
                fns = {}
                for on in (True, False):
                    switch(on)
                    step = bare_step_fn(clf, p, b, device)
                    fns[on] = step if build_time else (lambda step=step, on=on: (switch(on), step()))
                    fns[on]()  # warm
                times: dict[bool, list[float]] = {True: [], False: []}
                for _ in range(args.steps * args.repeats):
                    order = [True, False]
                    random.shuffle(order)
                    for on in order:
                        sync(device)
                        t = time.perf_counter()
                        fns[on]()
                        sync(device)
                        times[on].append(time.perf_counter() - t)
                switch(True)  # the default state again (the bare-step switches are reset below)
                BARE_BF16["on"], BARE_COMPILE["on"] = None, False
                ratio = statistics.median(x / y for x, y in zip(times[True], times[False]))
                rows.append({"change": label, "preset": name, "batch": b, "off_s_step": statistics.median(times[False]),
                             "on_s_step": statistics.median(times[True]), "ratio": ratio, "pairs": len(times[True]), "note": note})
                print(f"  {label} {name} b{b}: on/off {ratio:.2f}", file=sys.stderr, flush=True)
    return rows


def print_ab(rows: list[dict[str, Any]]) -> None:
    print("\n## Speed switches, off vs on (bare G + classifier steps alternated; ratio = median of pair ratios)")
    print(f"{'change':<36}{'preset':<12}{'batch':>5}{'off s/st':>9}{'on s/st':>9}{'on/off':>7}")
    for r in rows:
        print(f"{r['change']:<36}{r['preset'][:11]:<12}{r['batch']:>5}{r['off_s_step']:>9.3f}{r['on_s_step']:>9.3f}{r['ratio']:>7.2f}")


def print_throughput(rows: list[dict[str, Any]]) -> None:
    print("\n## Throughput (per step = one optimiser step for the whole batch; medians)")
    hdr = (f"{'preset':<17}{'batch':>5}{'s/step':>8}{'bare':>8}{'ovh':>6}{'step/s':>7}{'img-st/s':>9}{'s/image':>8}"
           f"{'GFLOP/st':>9}{'of G':>6}{'GFLOP/s':>8}{'mm GF/s':>8}{'%mm':>5}{'peakMB':>7}{'baseMB':>7}")
    print(hdr)
    for r in rows:
        print(f"{r['preset'][:16]:<17}{r['batch']:>5}{r['loop_s_step']:>8.3f}{r['bare_s_step']:>8.3f}{r['overhead']:>+6.0%}"
              f"{r['steps_per_s']:>7.2f}{r['image_steps_per_s']:>9.2f}{r['s_per_image']:>8.1f}{r['gflop_step']:>9.2f}"
              f"{r['gflop_step_gen'] / r['gflop_step']:>6.0%}{r['gflops']:>8.1f}{r['matmul_gflops']:>8.0f}"
              f"{r['share_of_matmul']:>5.0%}{fmt(r['peak_cpu_mb'] if r['peak_gpu_mb'] != r['peak_gpu_mb'] else r['peak_gpu_mb'], '.0f'):>7}"
              f"{fmt(r['rss_mb'], '.0f'):>7}")
    for note in sorted({r["note"] for r in rows if r["note"]}):
        print(f"  ({', '.join(sorted({r['preset'] for r in rows if r['note'] == note}))}: {note})")


# --------------------------------------------------------------------------- time to target


def time_to_target(clf: Classifier, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from peers import install_shims, lucent_until, run_lucent

    from dgncore.data import load_image, save_png
    from dgncore.evaluation import judge_images, load_judge, photo_bank

    held_out = load_judge(str(device))
    bank = None
    if Path(args.photos).is_dir():
        bank = photo_bank(args.photos, held_out)
    else:
        print(f"  ttt: no photo folder at {args.photos}: no plausibility ranks", file=sys.stderr)
    targets = class_targets(clf, args.classes)
    methods: list[tuple[str, Preset | None]] = []
    for m in args.ttt_methods:
        if parse_peer(m):  # the real Lucent, stopped at the same check cadence (peers.lucent_until)
            install_shims()
            methods.append((m, None))
            continue
        preset, note = preset_for(m, args)
        if note:
            print(f"  ttt: skipping {m}: no trained decoder on disk ({note} would only measure noise)", file=sys.stderr)
            continue
        methods.append((m, preset.replace(early_stop=args.p, steps=args.ttt_steps or preset.steps)))
    for m, preset in methods:  # warm every method's shapes
        if preset is None:
            run_lucent(clf, targets[0].units[0], steps=(2,), size=parse_peer(m)[1])
        else:
            optimize(clf, targets[:1], preset.replace(steps=2, early_stop=None), check_every=1)
    rows = []
    out = RESULTS / "ttt"
    for t in targets:
        order = list(methods)
        random.shuffle(order)  # spread the machine's load drift over the methods
        for m, preset in order:
            if preset is None:
                peer_steps, size = parse_peer(m)
                max_steps = args.ttt_steps or peer_steps
                got = lucent_until(clf, t.units[0], args.p, seed=args.seed, steps=max_steps, size=size, check_every=args.check_every)
                image, seconds, steps = got.image, got.seconds, got.steps
            else:
                sync(device)
                t0 = time.perf_counter()
                run = optimize(clf, [t], preset, seed=args.seed, check_every=args.check_every)
                sync(device)
                seconds = time.perf_counter() - t0
                image, steps, max_steps = run.images[0], run.steps[0], preset.steps
            png = out / m / f"{t.slug}.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            save_png(image, png)
            img = load_image(png)[None].to(device)
            with torch.inference_mode():
                p = float(Objective([t], clf.n_classes, device=device).probability(clf.logits(img))[0])
            (j,) = judge_images(img, [t.units[0]], bank, held_out)
            rows.append({
                "method": m, "class": t.units[0], "label": t.label, "seconds": seconds, "steps": steps,
                "max_steps": max_steps, "p_target": p, "reached": p >= args.p,
                "lite2_top1": j.top1, "lite2_top5": j.top5, "plausibility": j.plausibility,
            })
            print(f"  {m:<11} {t.label[:14]:<14} {seconds:6.1f}s {steps:>4} steps p={p:.3f} plaus {j.plausibility}", file=sys.stderr, flush=True)
    return rows


def print_ttt(rows: list[dict[str, Any]], p: float, default: str) -> None:
    if not rows:
        return
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(f"\n## Time until the saved PNG reaches p_target >= {p} (batch 1; '>' = not reached within the step budget)")
    print(f"{'class':<16}" + "".join(f"{m[:18]:>22}" for m in methods))
    for c in dict.fromkeys(r["class"] for r in rows):
        cells = []
        for m in methods:
            r = next(r for r in rows if r["class"] == c and r["method"] == m)
            l2 = ("T1" if r["lite2_top1"] else "T5" if r["lite2_top5"] else "--")
            pl = "" if r.get("plausibility") is None else f" r{r['plausibility']}"
            cells.append(f"{'' if r['reached'] else '>'}{r['seconds']:.1f}s {r['steps']}st {l2}{pl}")
        label = next(r["label"] for r in rows if r["class"] == c)
        print(f"{label[:15]:<16}" + "".join(f"{x:>22}" for x in cells))
    peer = next((m for m in methods if m == "lucent"), next((m for m in methods if m.startswith("lucent")), None))
    refs = [default] + ([peer] if peer else [])
    print(f"\n{'method':<12}{'reached':>8}{'median s':>9}{'mean s':>8}{'med steps':>10}{'mean p':>7}{'L2 top1':>8}{'L2 top5':>8}{'plaus med':>10}"
          + "".join(f"{'time vs ' + r:>{max(16, len(r) + 10)}}" for r in refs))
    med = {}
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        med[m] = statistics.median(r["seconds"] if r["reached"] else float("inf") for r in rs)
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        n = len(rs)
        ratios = [med[m] / med[ref] if ref in med and med[ref] not in (0, float("inf")) else float("nan") for ref in refs]
        plaus = [r["plausibility"] for r in rs if r.get("plausibility") is not None]
        print(f"{m:<12}{sum(r['reached'] for r in rs):>5}/{n:<2}{med[m]:>9.1f}{statistics.mean(r['seconds'] for r in rs):>8.1f}"
              f"{statistics.median(r['steps'] for r in rs):>10.0f}{statistics.mean(r['p_target'] for r in rs):>7.2f}"
              f"{sum(r['lite2_top1'] for r in rs):>5}/{n:<2}{sum(r['lite2_top5'] for r in rs):>5}/{n:<2}"
              f"{fmt(statistics.median(plaus) if plaus else float('nan'), '.1f'):>10}"
              + "".join(f"{fmt(x, '.2f'):>{max(16, len(r) + 10)}}" for x, r in zip(ratios, refs)))
    print("  (median s counts a class that never reached the threshold as infinite; L2 = EfficientNet-Lite2 on the saved PNG;"
          " cells: T1 / T5 = target in Lite2's top 1 / top 5, rN = plausibility: rank of the class's real photo among all photos"
          " by Lite2 features, 1 = nearest; plaus med = its median over the classes with a photo; lucent = torch-lucent's"
          " render_vis stopped at the first check that reaches p, see bench/peers.py)")


def batch_runs(clf: Classifier, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Whole batched runs (``--classes`` targets in one batch, early stop at ``--p``) with
    finished targets leaving the batch vs kept in it (``optimize.DROP_FINISHED``), the two
    run back to back in random order: what batch work such as a gallery gains."""
    import importlib

    opt_mod = importlib.import_module("dgncore.drawing.optimize")
    targets = class_targets(clf, args.classes)
    rows = []
    for name in args.ttt_methods:
        if parse_peer(name):  # a peer (bench/peers.py) runs one target at a time: no batch to measure
            continue
        preset, note = preset_for(name, args)
        if note:
            continue
        preset = preset.replace(early_stop=args.p, steps=args.ttt_steps or preset.steps)
        optimize(clf, targets[:2], preset.replace(steps=2, early_stop=None), check_every=1)  # warm
        out: dict[bool, dict[str, Any]] = {}
        for on in random.sample([True, False], 2):
            opt_mod.DROP_FINISHED = on
            sync(device)
            t = time.perf_counter()
            run = optimize(clf, targets, preset, seed=args.seed, check_every=args.check_every)
            sync(device)
            out[on] = {"seconds": time.perf_counter() - t, "steps": run.steps, "checks": run.checks[-1][1]}
        opt_mod.DROP_FINISHED = True
        def row_steps(steps: int) -> int:  # one target's rows x steps: all starts until the prune, then one
            cut = min(steps, preset.prune_after) if preset.prune_after and preset.restarts > 1 else steps
            return preset.restarts * cut + (steps - cut)

        row = {"method": name, "targets": len(targets), "restarts": preset.restarts, "max_steps": preset.steps,
               "on_s": out[True]["seconds"], "off_s": out[False]["seconds"], "ratio": out[True]["seconds"] / out[False]["seconds"],
               "row_steps_on": sum(map(row_steps, out[True]["steps"])), "row_steps_off": len(targets) * row_steps(max(out[False]["steps"])),
               "reached": sum(1 for p in out[True]["checks"] if p == p and p >= args.p), "steps": out[True]["steps"]}
        rows.append(row)
        print(f"  batch {name}: drop {row['on_s']:.1f}s keep {row['off_s']:.1f}s ratio {row['ratio']:.2f}", file=sys.stderr, flush=True)
    return rows


def print_batch(rows: list[dict[str, Any]], p: float) -> None:
    if not rows:
        return
    print(f"\n## Batched runs until p_target >= {p}: finished targets leave the batch (on) vs stay in it (off)")
    print(f"{'method':<12}{'targets':>8}{'reached':>8}{'on s':>8}{'off s':>8}{'on/off':>7}{'row-steps on':>13}{'off':>7}")
    for r in rows:
        print(f"{r['method']:<12}{r['targets']:>8}{r['reached']:>8}{r['on_s']:>8.1f}{r['off_s']:>8.1f}{r['ratio']:>7.2f}"
              f"{r['row_steps_on']:>13}{r['row_steps_off']:>7}")
    print("  (row-steps: rows x steps computed; off = every row runs until the last target stops)")


# --------------------------------------------------------------------------- profile


def _weight_shape(name: str, shapes: list) -> tuple | None:
    i = 2 if "backward" in name else 1
    if len(shapes) > i and isinstance(shapes[i], list) and len(shapes[i]) == 4:
        return tuple(shapes[i])
    return None


def _conv_shapes(module: torch.nn.Module) -> set[tuple]:
    return {tuple(m.weight.shape) for m in module.modules() if isinstance(m, torch.nn.Conv2d)}


def categorize(name: str, shapes: list, clf_convs: set, gen_convs: set, gpu: bool = False) -> str:
    """Profile category of an operator (CPU: aten ops, told apart by weight shape) or, on
    CUDA, of a kernel (by name only: convolution kernels cannot be told apart there)."""
    n = name.lower()
    if gpu and not n.startswith("aten::") and any(k in n for k in ("depthwise", "dwconv")):
        return "depthwise conv kernels (GPU)"
    if gpu and not n.startswith("aten::") and any(k in n for k in ("conv", "xmma", "implicit_gemm", "cudnn", "winograd", "fprop", "dgrad", "wgrad")):
        return "convolution kernels (GPU)"
    if any(k in n for k in ("convolution_backward", "mkldnn_convolution", "_slow_conv2d", "cudnn_convolution", "conv_depthwise")):
        w = _weight_shape(name, shapes)
        if w is None:
            return "conv (unknown)"
        if w in gen_convs and w not in clf_convs:
            return "generator conv"
        if w[1] == 1 and w[2] > 1:
            return "classifier depthwise conv"
        if w[2] == 1:
            return "classifier 1x1 conv"
        if w in clf_convs:
            return "classifier conv (stem)"
        return "generator conv"
    if "batch_norm" in n:
        return "batch norm"
    if any(k in n for k in ("hardtanh", "relu", "threshold", "clamp_min", "silu", "gelu")):
        return "activations (ReLU/ReLU6)"
    if "sigmoid" in n:
        return "sigmoid"
    if "upsample" in n:
        return "upsample"
    if any(k in n for k in ("fft", "grid_sampler", "affine_grid", "reflection_pad")):
        return "fourier/transforms"
    if "foreach" in n or "optimizer" in n or "adam" in n or "lerp" in n:
        return "optimizer"
    if any(k in n for k in ("addmm", "aten::mm", "aten::bmm", "matmul", "aten::linear")):
        return "matmul (head)"
    if any(k in n for k in ("copy_", "constant_pad", "fill_", "zero_", "contiguous", "clone", "cat", "empty", "reorder", "to_dense", "to_mkldnn", "as_strided", "pixel_shuffle")):
        return "copies/padding/layout"
    if any(k in n for k in ("mean", "sum", "softmax", "median", "mul", "add", "div", "sub", "round", "clamp", "pow", "abs", "neg", "where", "sort", "randn", "normal")):
        return "elementwise/reductions"
    return "other"


def conv_flops_by_category(clf: Classifier, source: torch.nn.Module, preset: Preset, b: int, steps: int, check_every: int,
                           clf_convs: set, gen_convs: set, device: torch.device) -> dict[str, float]:
    """Convolution FLOPs of ``steps`` loop steps per profile category, from forward hooks
    on one forward pass: each training step runs the forward and an input gradient
    (classifier, frozen decoder: 2x the forward) or also weight gradients (untrained G:
    3x); each 8-bit check runs one more classifier forward (and G's, unless the final
    image is a median of recent ones)."""
    fwd: dict[tuple[str, bool], float] = defaultdict(float)

    def hook(is_gen: bool):
        def fn(m, _inp, out):
            w = m.weight
            cat = categorize("aten::mkldnn_convolution", [[], list(w.shape)], clf_convs, gen_convs if is_gen else set())
            fwd[(cat, is_gen)] += 2.0 * out.numel() * w.shape[1] * w.shape[2] * w.shape[3]
        return fn

    model = clf.fast_model if clf.fast and clf.fast_model is not None else clf.model
    handles = [m.register_forward_hook(hook(False)) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    handles += [m.register_forward_hook(hook(True)) for m in source.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            source.train()
            clf.logits(source.classifier_view(source()))
    finally:
        for h in handles:
            h.remove()
    checks = steps // check_every + (1 if steps % check_every else 0)
    out: dict[str, float] = defaultdict(float)
    for (cat, is_gen), f in fwd.items():
        mult = (3 if preset.method == "untrained" else 2) if is_gen else 2
        per_check = (0 if preset.final == "median" else 1) if is_gen else 1
        out[cat] += f * (steps * mult + checks * per_check)
    return dict(out)


def profile(clf: Classifier, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    RESULTS.mkdir(parents=True, exist_ok=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    clf_convs = _conv_shapes(clf.model) | _conv_shapes(getattr(clf, "fast_model", None) or clf.model)
    rows = []
    for name in args.presets:
        preset, note = preset_for(name, args)
        b = args.profile_batch
        targets = class_targets(clf, b)
        p = preset.replace(steps=args.profile_steps, early_stop=None)
        torch.manual_seed(0)
        source = build_source(p, b * p.restarts, device)
        gen_convs = _conv_shapes(source)
        flops = conv_flops_by_category(clf, source, p, b, args.profile_steps, args.check_every, clf_convs, gen_convs, device)
        optimize(clf, targets, p.replace(steps=2), check_every=1)  # warm
        with tprofile(activities=activities, record_shapes=True) as prof:
            optimize(clf, targets, p, check_every=args.check_every)
        ka = prof.key_averages(group_by_input_shape=True)
        use_cuda = device.type == "cuda"
        cats: dict[str, float] = defaultdict(float)
        for e in ka:
            t = e.self_device_time_total if use_cuda else e.self_cpu_time_total
            cats[categorize(e.key, e.input_shapes, clf_convs, gen_convs, gpu=use_cuda)] += t
        total = sum(cats.values()) or 1.0
        stem = f"profile_{name}_b{b}"
        sort = "self_device_time_total" if use_cuda else "self_cpu_time_total"
        text = [f"# {name} batch {b}, {args.profile_steps} loop steps, device {device} {note}".rstrip(), "",
                "## self time by category", ""]
        text += [f"{c:<30} {v / 1e3:10.1f} ms {v / total:6.1%}" + (f"  {flops[c] / 1e9:8.2f} GFLOP {flops[c] / v / 1e3:6.1f} GFLOP/s" if c in flops and v else "")
                 for c, v in sorted(cats.items(), key=lambda kv: -kv[1])]
        text += ["", "## top ops", "", prof.key_averages().table(sort_by=sort, row_limit=30), "",
                 "## top ops by input shape", "", ka.table(sort_by=sort, row_limit=40)]
        (RESULTS / f"{stem}.txt").write_text("\n".join(text))
        if args.trace:
            prof.export_chrome_trace(str(RESULTS / f"{stem}.trace.json"))
        rows.append({"preset": name, "batch": b, "note": note, "total_ms": total / 1e3,
                     "categories": {c: v / total for c, v in sorted(cats.items(), key=lambda kv: -kv[1])},
                     "gflops": {c: flops[c] / cats[c] / 1e3 for c in flops if cats.get(c)}})
        print(f"  profiled {name} b{b} -> {RESULTS / stem}.txt", file=sys.stderr, flush=True)
    return rows


def print_profile(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cats = list(dict.fromkeys(c for r in rows for c in r["categories"]))
    print(f"\n## Profile: share of self time per category (batch {rows[0]['batch']}; full tables in bench/results/profile_*.txt)")
    print(f"{'category':<30}" + "".join(f"{r['preset'][:12]:>13}" for r in rows))
    for c in cats:
        print(f"{c:<30}" + "".join(f"{r['categories'].get(c, 0.0):>13.1%}" for r in rows))
    gcats = [c for c in cats if any(c in r["gflops"] for r in rows)]
    if gcats:
        print("achieved GFLOP/s per convolution category (FLOPs from forward hooks / self time):")
        for c in gcats:
            print(f"{c:<30}" + "".join(f"{fmt(r['gflops'].get(c, float('nan')), '.1f'):>13}" for r in rows))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="throughput,ab,ttt,batch,profile", help="comma list of sections: throughput, ab, ttt, batch, profile")
    ap.add_argument("--switches", default="", help="ab: only the switches whose label contains one of these words (comma list)")
    ap.add_argument("--presets", default="pretrained,untrained,pixel,fourier", help="presets for throughput and profile")
    ap.add_argument("--batches", default="1,4,16", help="batch sizes (targets per run) for throughput")
    ap.add_argument("--steps", type=int, default=10, help="loop steps per throughput sample")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved samples per throughput row")
    ap.add_argument("--check-every", type=int, default=10, help="optimize()'s check_every (early-stop granularity)")
    ap.add_argument("--classes", type=int, default=8, help="classes for the time-to-target and batch sections")
    ap.add_argument("--ttt-methods", default="pretrained,untrained,pixel,fourier",
                    help="our presets and peers: lucent[STEPS][@SIZE] (bench/peers.py; needs bench/requirements.txt)")
    ap.add_argument("--photos", default=None, help="photo folder for the ttt plausibility column (default: ../shared/imagenet-samples beside the checkout)")
    ap.add_argument("--ttt-steps", type=int, default=0, help="step budget per class (0: the preset's own)")
    ap.add_argument("--p", type=float, default=0.9, help="target probability for time-to-target")
    ap.add_argument("--profile-batch", type=int, default=1)
    ap.add_argument("--profile-steps", type=int, default=10)
    ap.add_argument("--trace", action="store_true", help="also write chrome traces of the profiles")
    ap.add_argument("--decoder", default=None, help="decoder checkpoint for the pretrained preset (default: the preset's)")
    ap.add_argument("--decoder-width", type=float, default=None, help="width of the random stand-in decoder when none is trained")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, one per core)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="batches 1,4; 10 steps x 2 repeats; 4 classes with at most 60 steps")
    ap.add_argument("--json", default=None, help="also write all figures to this JSON file")
    ap.add_argument("--memprobe", default=None, help=argparse.SUPPRESS)  # internal: PRESET:BATCH in a fresh process
    args = ap.parse_args(argv)
    if args.quick:
        args.batches, args.steps, args.repeats, args.classes = "1,4", 10, 2, 4
        args.ttt_steps = args.ttt_steps or 60
    if args.decoder_width is None:
        try:
            from dgncore.prior.training import PretrainConfig

            args.decoder_width = PretrainConfig().width
        except ImportError:
            args.decoder_width = 0.5
    args.presets = [p for p in args.presets.split(",") if p]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.ttt_methods = [m for m in args.ttt_methods.split(",") if m]
    if args.photos is None:
        from dgncore.evaluation import DEFAULT_PHOTOS

        args.photos = str(DEFAULT_PHOTOS)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memprobe:
        return _memprobe_main(args.memprobe, args)
    sections = set(args.only.split(","))
    random.seed(args.seed)

    clf = load_classifier("efficientnet_lite0", device=args.device)
    device = clf.device
    print(f"# bench/speed.py  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  device {device}"
          f" ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()},"
          f" {torch.get_num_threads()} threads)  load avg {os.getloadavg()[0]:.1f}")
    print(f"# matmul fp32 {8192 if device.type == 'cuda' else 2048}^2: {matmul_gflops(device, reps=5):.0f} GFLOP/s (best of 5, now)")
    out: dict[str, Any] = {"args": {k: v for k, v in vars(args).items()}, "device": str(device)}
    if "throughput" in sections:
        out["throughput"] = throughput(clf, args, device)
        print_throughput(out["throughput"])
    if "ttt" in sections:
        out["ttt"] = time_to_target(clf, args, device)
        print_ttt(out["ttt"], args.p, "fourier")
    if "batch" in sections:
        out["batch"] = batch_runs(clf, args, device)
        print_batch(out["batch"], args.p)
    if "ab" in sections:
        out["ab"] = ab(clf, args, device)
        print_ab(out["ab"])
    if "profile" in sections:
        out["profile"] = profile(clf, args, device)
        print_profile(out["profile"])
    print(f"\n# load avg at end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
