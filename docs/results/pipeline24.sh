#!/bin/bash
# twenty-fourth session: the rest of prompts.jsonl answered with their features taken while decoding
# (distill --features), both cores, until STOP (then SIGTERM: the batches done are kept)
cd /work/main
T=~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct; R=~/.cache/specscope/runs/e3_real
export OMP_NUM_THREADS=2
date
timeout -s TERM ${STOP:-70m} .venv/bin/python -m tools.train.distill --target $T --prompts $R/prompts.jsonl --out $R/train.jsonl \
  --batch 32 --window 4 --max-new-tokens 128 --threads 2 --dtype bfloat16 --kernels packed --features $R/feats20
date; wc -l $R/train.jsonl
# twenty-fourth session: after the distillation (pipeline24.sh), 22a continued on the grown cache
# (lr 5e-5, two threads, MINUTES), then 22a and 24a on the held-out decoding walk
set -x
cd /work/main
T=~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct; R=~/.cache/specscope/runs/e3_real
PY=.venv/bin/python
export OMP_NUM_THREADS=2
while pgrep -f "tools.train.distill --target" > /dev/null; do sleep 15; done
date
$PY -m tools.train eagle3 --target $T --features $R/feats20 --init-head $R/head_22a \
    --init-from-target --ttt 3 --batch 4 --lr 5e-5 --intermediate-size 2048 --autocast bfloat16 --threads 2 \
    --minutes ${MINUTES:-35} --checkpoint-every 300 --heldout $R/feats_heldout --heldout-every 900 --seed 24 \
    --run-dir $R/run24 --out $R/head_24a
date
$PY -m tools.train heldout --target $T --features $R/feats_heldout \
  --heads $R/head_22a,$R/head_24a --steps 3 --max-new 64 --autocast bfloat16 --threads 2 \
  --json $R/heldout24.json
date
