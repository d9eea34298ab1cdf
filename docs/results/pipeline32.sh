#!/bin/bash
# thirty-second session: after the feature cache of all 6368 answers (shipped head's vocabulary), the
# held-out set (the first 64 of prompts.heldout.jsonl, distilled and featurised in the same vocabulary),
# the shipped head 22a continued on the whole cache (lr 5e-5, two threads, MINUTES), then the shipped
# head and the new one on the held-out decoding walk. Resumable: each stage skips what exists.
set -x
cd "$(dirname "$0")/../.."
T=~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct; R=~/.cache/specscope/runs/e3_real
PY=.venv/bin/python
export OMP_NUM_THREADS=2
date
while pgrep -f "tools.train.features --target .* --out $R/feats " > /dev/null; do sleep 30; done  # the cache job
head -64 $R/prompts.heldout.jsonl > $R/heldout64.jsonl
[ "$(wc -l < $R/heldout64.answers.jsonl 2>/dev/null || echo 0)" -ge 64 ] || \
  $PY -m tools.train.distill --target $T --prompts $R/heldout64.jsonl --out $R/heldout64.answers.jsonl \
    --batch 32 --window 4 --max-new-tokens 128 --threads 2 --dtype auto --kernels stock
$PY -m tools.train.features --target $T --data $R/heldout64.answers.jsonl --out $R/feats_heldout \
  --vocab $R/vocab_shipped.json --top-k 64 --max-tokens 384 --threads 2 --dtype auto
date
[ -s $R/head_32a/model.safetensors ] || \
$PY -m tools.train eagle3 --target $T --features $R/feats --init-head assets/drafters/eagle3_coder \
    --init-from-target --ttt 3 --batch 4 --lr 5e-5 --intermediate-size 2048 --autocast bfloat16 --threads 2 \
    --minutes ${MINUTES:-40} --checkpoint-every 300 --heldout $R/feats_heldout --heldout-every 900 --seed 32 \
    --run-dir $R/run32 --out $R/head_32a
date
$PY -m tools.train heldout --target $T --features $R/feats_heldout \
  --heads assets/drafters/eagle3_coder,$R/head_32a --steps 3 --max-new 64 --autocast bfloat16 --threads 2 \
  --json $R/heldout32.json
date
