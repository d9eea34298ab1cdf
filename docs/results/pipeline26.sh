#!/bin/bash
# twenty-sixth session: 24a continued on the whole feats20 cache (4388 samples), lr 5e-5, two threads,
# MINUTES, then 22a, 24a and 26a on the held-out decoding walk
set -x
cd /work/main
T=~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct; R=~/.cache/specscope/runs/e3_real
PY=.venv/bin/python
export OMP_NUM_THREADS=2
date
$PY -m tools.train eagle3 --target $T --features $R/feats20 --init-head $R/head_24a \
    --init-from-target --ttt 3 --batch 4 --lr 5e-5 --intermediate-size 2048 --autocast bfloat16 --threads 2 \
    --minutes ${MINUTES:-40} --checkpoint-every 300 --heldout $R/feats_heldout --heldout-every 900 --seed 26 \
    --run-dir $R/run26 --out $R/head_26a
date
$PY -m tools.train heldout --target $T --features $R/feats_heldout \
  --heads $R/head_22a,$R/head_24a,$R/head_26a --steps 3 --max-new 64 --autocast bfloat16 --threads 2 \
  --json $R/heldout26.json
date
