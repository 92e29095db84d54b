"""An independent check of a suspected ImageNet shortcut: a cue made by hand, pasted onto other classes' photos.

    python bench/cue_check.py [--photos ../shared/imagenet-samples] [--class "web site"] [--sizes 56,112] [--alpha 1] [--json out.json]
    python bench/cue_check.py --sizes 224 --alpha 0.5      # the text over the whole photo, half transparent

The whole-model audit's one lead on EfficientNet-Lite0 was "web site": the fine texture of
its real photo (a screenshot: text and interface lines) turned 59% of other photos into
that class (docs/audit.md). This checks the lead without the generated images: a patch of
black text on white, drawn here, pasted in the top-left corner of every photo of another
class, against three controls of the same size and place: the white patch without text,
grey noise, and the text patch with its 4 x 4 px blocks shuffled (the same ink, no letters).
It counts the photos whose top-1 becomes the class (and was not before), with Wilson 95%
intervals, and names the classes the text patch moves photos to most. Only figures are
written: no photo, pasted or not, leaves the machine's memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgncore.audit.intervention import paste, wilson
from dgncore.data import image_files, load_for_model
from dgncore.evaluation import DEFAULT_PHOTOS, photo_class
from dgncore.models.classifiers import load_classifier

WORDS = "Home News Sport Weather Contact Login Search Account Help About Shop Cart Sign in Menu Terms Privacy Blog Video".split()
MARGIN = 8


def text_patch(size: int, seed: int = 0) -> torch.Tensor:
    """(3, size, size) black interface text on white, a few short lines."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    y = 2
    while y < size - 10:
        line = " ".join(rng.choice(WORDS, 4))
        draw.text((2, y), line, fill=(20, 20, 20))
        y += 11
    draw.line((0, 0, size, 0), fill=(60, 60, 200), width=3)  # a menu bar's edge
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)


def controls(text: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    size = text.shape[-1]
    blocks = text.unfold(1, 4, 4).unfold(2, 4, 4)  # (3, n, n, 4, 4)
    n = blocks.shape[1]
    flat = blocks.reshape(3, n * n, 4, 4)[:, torch.randperm(n * n, generator=gen)]
    shuffled = torch.ones_like(text)
    shuffled[:, : n * 4, : n * 4] = flat.reshape(3, n, n, 4, 4).permute(0, 1, 3, 2, 4).reshape(3, n * 4, n * 4)
    return {"text": text, "blank": torch.ones_like(text), "noise": torch.rand(1, size, size, generator=gen).expand(3, -1, -1).clone(),
            "shuffled text": shuffled}


def web_image(size: int = 224) -> torch.Tensor:
    """(3, size, size) a spider web drawn by hand: thin light threads (spokes and a spiral) on grey."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), (90, 95, 90))
    draw = ImageDraw.Draw(im)
    c = size / 2
    for k in range(16):
        a = 2 * np.pi * k / 16
        draw.line((c, c, c + size * np.cos(a), c + size * np.sin(a)), fill=(235, 235, 235), width=1)
    pts = [(c + r * np.cos(t), c + r * np.sin(t)) for t, r in ((t, 3 + 2.2 * t) for t in np.arange(0, 60, 0.05))]
    draw.line(pts, fill=(235, 235, 235), width=1)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)


def rock_image(size: int = 224, seed: int = 0) -> torch.Tensor:
    """(3, size, size) layered sandstone made by hand: horizontal strata, fractal grain and dark cracks, in rock colours."""
    rng = np.random.default_rng(seed)
    y = np.arange(size)[:, None] / size
    strata = 0.5 + 0.25 * np.sin(2 * np.pi * (6 * y + 0.3 * rng.random()))
    def octave(k: int) -> np.ndarray:  # smooth noise at 1/2**k of the size
        low = torch.from_numpy(rng.random((1, 1, size // 2**k + 2, size // 2**k + 2)).astype(np.float32))
        return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[0, 0].numpy()

    grain = sum(octave(k) / 2 ** (5 - k) for k in range(1, 6))
    v = np.clip(strata * 0.6 + grain * 0.5 - 0.15 * (rng.random((size, size)) < 0.02), 0, 1)
    rgb = np.stack([0.35 + 0.55 * v, 0.25 + 0.45 * v, 0.18 + 0.35 * v])
    return torch.from_numpy(rgb.astype(np.float32)).clamp(0, 1)


def texture_controls(cue: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The cue, grey noise with its fine detail's spread, and the cue's pixels scrambled (same colours, no structure)."""
    gen = torch.Generator().manual_seed(seed)
    detail = cue - torch.nn.functional.avg_pool2d(cue[None], 9, 1, 4, count_include_pad=False)[0]
    noise = (cue.mean() + detail.std() * torch.randn(1, *cue.shape[1:], generator=gen)).clamp(0, 1).expand(3, -1, -1).clone()
    flat = cue.reshape(3, -1)
    scrambled = flat[:, torch.randperm(flat.shape[1], generator=gen)].reshape(cue.shape)
    return {"cue": cue, "grey noise": noise, "scrambled pixels": scrambled}


#: hand-made cues for the texture test (``--texture``): the class each stands for and how it is drawn
TEXTURES = {"web site": lambda: text_patch(224), "spider web": web_image, "cliff dwelling": rock_image}


def other_photos(folder: Path, cls: str, also_out: str | None = None):
    """(classifier, the class's index, the photos of every other class (and not of
    ``also_out``) with their files, and Lite0's top-1 on them as they are)."""
    clf = load_classifier("efficientnet_lite0", device="cpu")
    target = clf.classes.index(cls)
    skip = {target} | ({clf.classes.index(also_out)} if also_out else set())
    files = [f for f in image_files(folder) if photo_class(f) is not None and photo_class(f) not in skip]
    photos = torch.stack([load_for_model(f, clf.input_size) for f in files])
    return clf, target, files, photos, top1(clf, photos)


@torch.inference_mode()
def top1(clf, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    return torch.cat([clf.logits(images[i : i + batch]).argmax(1) for i in range(0, len(images), batch)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--class", dest="cls", default="web site")
    ap.add_argument("--sizes", default="56,112")
    ap.add_argument("--alpha", type=float, default=1.0, help="the patch's opacity (below 1 it is blended over the photo)")
    ap.add_argument("--texture", action="store_true",
                    help="move the hand-made cue's fine detail over each whole photo, as the audit's texture test does (TEXTURES: web site, spider web, cliff dwelling)")
    ap.add_argument("--from-photo", metavar="CLASS", help="with --texture: take the cue from the sample photo of this other class (a scene like the "
                    "suspect's, e.g. cliff for cliff dwelling) instead of drawing it; that photo is left out of the count")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.texture:
        return texture_check(args)
    clf, target, files, photos, before = other_photos(args.photos, args.cls)
    out: dict = {"class": args.cls, "alpha": args.alpha, "photos": len(files), "predicted_before": int((before == target).sum()), "sizes": {}}
    print(f"{len(files)} photos of other classes; {out['predicted_before']} already called {args.cls!r}")
    for size in (int(s) for s in args.sizes.split(",")):
        rows = {}
        for name, patch in controls(text_patch(size)).items():
            at = 0 if size + MARGIN > clf.input_size else MARGIN
            region = photos[:, :, at : at + size, at : at + size]
            after = top1(clf, paste(photos, patch, at, at) if args.alpha >= 1 else
                         paste(photos, torch.zeros_like(patch), at, at) + torch.nn.functional.pad(
                             (1 - args.alpha) * region + args.alpha * patch, (at, clf.input_size - at - size, at, clf.input_size - at - size)))
            flips = int(((after == target) & (before != target)).sum())
            lo, hi = wilson(flips, len(files))
            moved = Counter(clf.classes[int(c)] for c, b in zip(after, before) if c != b)
            rows[name] = {"flips": flips, "rate": round(flips / len(files), 4), "ci": [round(lo, 4), round(hi, 4)], "changed": int((after != before).sum()),
                          "moved_to": moved.most_common(4)}
            print(f"  {size:>3} px {name:>13}: {flips:>3} to {args.cls!r} ({flips / len(files):.1%} [{lo:.1%}-{hi:.1%}]), "
                  f"{rows[name]['changed']} changed top-1, most to {moved.most_common(3)}", flush=True)
        out["sizes"][str(size)] = rows
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def texture_check(args: argparse.Namespace) -> int:
    """The texture test with a hand-made cue: its fine detail (tiles shuffled, as the audit
    does) over every photo of another class, against grey noise and the cue's pixels scrambled."""
    from dgncore.audit.intervention import transfer

    if args.cls not in TEXTURES and not args.from_photo:
        raise SystemExit(f"no hand-made texture for {args.cls!r}: one of {', '.join(TEXTURES)}, or --from-photo CLASS")
    clf, target, files, photos, before = other_photos(args.photos, args.cls, also_out=args.from_photo)
    if args.from_photo:
        source = clf.classes.index(args.from_photo)
        cue_image = load_for_model(next(f for f in image_files(args.photos) if photo_class(f) == source), clf.input_size)
    else:
        cue_image = TEXTURES[args.cls]()
    out: dict = {"class": args.cls, "test": "texture", "from_photo": args.from_photo, "photos": len(files), "predicted_before": int((before == target).sum()), "cues": {}}
    print(f"{len(files)} photos of other classes; {out['predicted_before']} already called {args.cls!r}")
    for name, cue in texture_controls(cue_image).items():
        after = torch.cat([top1(clf, transfer("texture", photos[i : i + 64], cue)) for i in range(0, len(photos), 64)])
        flips = int(((after == target) & (before != target)).sum())
        lo, hi = wilson(flips, len(files))
        moved = Counter(clf.classes[int(c)] for c, b in zip(after, before) if c != b)
        out["cues"][name] = {"flips": flips, "rate": round(flips / len(files), 4), "ci": [round(lo, 4), round(hi, 4)], "moved_to": moved.most_common(4)}
        print(f"  {name:>16}: {flips:>3} to {args.cls!r} ({flips / len(files):.1%} [{lo:.1%}-{hi:.1%}]), most moved to {moved.most_common(3)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
