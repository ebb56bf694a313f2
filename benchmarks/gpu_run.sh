#!/usr/bin/env bash
# The synthetic benchmark at `gpu` scale plus the shipped default model, on a lent GPU machine
# (its image has torch/opencv/onnxruntime; moderngl and trimesh wheels come from .wheels/, EGL's
# loader from .gl/). Results land in $OUT: results.md, results_figs.png, results.json, resources.tar.
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
python3 -m pip install -q --no-index --find-links .wheels moderngl trimesh
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 MIA_CACHE_DIR=/tmp/mia-cache
W=/tmp/paper_gpu
python3 benchmarks/paper_tables.py --scale gpu --work $W --out $OUT/results.md "$@" 2>&1 | grep -v Warning
cp $W/results.json $OUT/ || true
python3 -m app.cli bundle $W/models/mia_K_aug/last.pt $W/data --capture id001_c01 --frames 90 \
    --subjects id001,id002,id016 --out /tmp/bundle
tar -C /tmp/bundle -cf $OUT/resources.tar default_model.pt demo_capture subjects
ls -la $OUT
