#!/usr/bin/env bash
# The synthetic benchmark at `gpu` scale plus the shipped default model, on a lent GPU machine
# (its image has torch/opencv/onnxruntime; moderngl and trimesh wheels come from .wheels/, EGL's
# loader from .gl/). Two runs fit the 10-minute limit of one command:
#   bash benchmarks/gpu_run.sh main            # Tables 1-2, Fig. 8; bundles the default model
#   bash benchmarks/gpu_run.sh rest MODEL.pt   # Table 3, Fig. 9, correspondence from that model
#   bash benchmarks/gpu_run.sh default         # the shipped default model alone, trained 3x longer
# Results land in $OUT (results_<part>.json, resources.tar.part_*); merge the JSONs with
# `paper_tables.py --report-only A.json B.json`. Prepare the two carried folders once (not committed):
#   pip download --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 \
#       --platform manylinux_2_28_x86_64 moderngl glcontext trimesh --no-deps -d .wheels
#   (cd .gl && apt-get download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
set -euo pipefail
PART=${1:-main}
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
python3 -m pip install -q --no-index --find-links .wheels moderngl trimesh
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 MIA_CACHE_DIR=/tmp/mia-cache
W=/tmp/paper_gpu
EXTRA=()
[ "$PART" = rest ] && EXTRA=(--base-model "$2")
python3 benchmarks/paper_tables.py --scale gpu --part "$PART" --work $W --out $OUT/results.md "${EXTRA[@]}" 2>&1 \
    | grep -v -i warning
cp $W/results.json $OUT/results_$PART.json
if [ "$PART" = main ] || [ "$PART" = default ]; then
    MODEL=mia_K_aug; [ "$PART" = default ] && MODEL=mia_K_default
    python3 -m app.cli bundle $W/models/$MODEL/last.pt $W/data --capture id001_c01 --frames 90 \
        --subjects id001,id002,id016 --out /tmp/bundle
    tar -C /tmp/bundle -cf /tmp/resources.tar default_model.pt demo_capture subjects
    split -b 15000000 /tmp/resources.tar $OUT/resources.tar.part_   # the device returns files <= 16 MB
    for m in $W/models/*/log.csv; do cp "$m" "$OUT/log_$(basename $(dirname $m)).csv" 2>/dev/null || true; done
fi
ls -la $OUT
