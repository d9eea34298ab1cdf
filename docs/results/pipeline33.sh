#!/bin/bash
# thirty-third session: after the feature cache of all 6368 answers (shipped head's vocabulary: the
# thirty-first section's command, finished here), head 32a continued on the whole cache (lr 5e-5, two
# threads, MINUTES), then the shipped head, 32a and 33a on the held-out decoding walk (the thirty-second
# session's 64 answers). Resumable: each stage skips what exists.
set -x
cd "$(dirname "$0")/../.."
T=~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct; R=~/.cache/specscope/runs/e3_real
PY=.venv/bin/python
export OMP_NUM_THREADS=2
date
while pgrep -f "tools.train.features --target .* --out $R/feats " > /dev/null; do sleep 30; done  # the cache job
date
[ -s $R/head_33a/model.safetensors ] || \
$PY -m tools.train eagle3 --target $T --features $R/feats --init-head $R/head_32a \
    --init-from-target --ttt 3 --batch 4 --lr 5e-5 --intermediate-size 2048 --autocast bfloat16 --threads 2 \
    --minutes ${MINUTES:-30} --checkpoint-every 300 --heldout $R/feats_heldout --heldout-every 900 --seed 33 \
    --run-dir $R/run33 --out $R/head_33a
date
$PY -m tools.train heldout --target $T --features $R/feats_heldout \
  --heads assets/drafters/eagle3_coder,$R/head_32a,$R/head_33a --steps 3 --max-new 64 --autocast bfloat16 --threads 2 \
  --json $R/heldout33.json
date
