"""How well each decoder can draw photographs it never saw: the best-fit reconstruction
error on the held-out tenth of a photo folder, for several decoder files in one run.

    python bench/decoder_fit.py dgncore/assets/decoder.safetensors my_decoder.safetensors [--photos DIR --n 32 --steps 100]

For every decoder the same held-out photos (``dgncore.data.holdout_split``: every 10th by
sorted path, never used to train a decoder here) are fitted by Adam on the code alone,
through the same ReLU as the pretrained method (``dgncore.prior.training.fit_codes``), at the
size the decoder renders. Prints the mean MSE (and its standard error) per decoder and
the ratio to the first; saves a sheet of photo / fits under ``--out`` (git-ignored: it
holds photos).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dgncore.data import save_png  # noqa: E402
from dgncore.evaluation import DEFAULT_PHOTOS  # noqa: E402
from dgncore.models.classifiers import pick_device  # noqa: E402
from dgncore.prior.decoder import load_decoder  # noqa: E402
from dgncore.prior.fitting import fit_codes, heldout_photos  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("decoders", nargs="+", help="decoder files (.safetensors); the first is the baseline")
    ap.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    ap.add_argument("--n", type=int, default=32, help="held-out photos to fit (the first n of the held-out tenth)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="where the fits run: cpu, cuda, auto")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "decoder_fit"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("*\n")
    dev = pick_device(args.device)
    rows, sheets = [], []
    for path in args.decoders:
        decoder, mean_code, meta = load_decoder(path)
        size = decoder.config.out_size
        photos = heldout_photos(args.photos, size, args.n)
        t0 = time.perf_counter()
        torch.manual_seed(0)
        err, fitted = fit_codes(decoder.to(dev), mean_code.to(dev), photos.to(dev), steps=args.steps, lr=args.lr)
        err, fitted = err.cpu(), fitted.cpu()
        seconds = time.perf_counter() - t0
        rows.append({"decoder": Path(path).name, "path": str(path), "mse": float(err.mean()), "se": float(err.std() / len(err) ** 0.5),
                     "photos": len(err), "steps": args.steps, "seconds": round(seconds, 1), "device": str(dev),
                     "trained_on": (meta.get("data") or {}).get("kind"), "train_steps": meta.get("steps_done")})
        if not sheets:
            sheets.append(photos[:8])
        sheets.append(torch.nn.functional.interpolate(fitted[:8], size=sheets[0].shape[-1], mode="bilinear", antialias=True))
    base = rows[0]["mse"]
    print(f"{'decoder':<40} {'mse':>8} {'+-se':>7} {'ratio':>6} {'trained on':>12} {'steps':>6}")
    for r in rows:
        print(f"{r['path'][-40:]:<40} {r['mse']:8.5f} {r['se']:7.5f} {r['mse'] / base:6.2f} {str(r['trained_on']):>12} {str(r['train_steps']):>6}")
    rows_img = [torch.cat(list(r), 2) for r in sheets]  # one row per decoder, photos on top
    save_png(torch.cat(rows_img, 1), out / "sheet.png")
    print(f"sheet: {out / 'sheet.png'} (top: the photos; then one row per decoder)")
    (out / "decoder_fit.json").write_text(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
