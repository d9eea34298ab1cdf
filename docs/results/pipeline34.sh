#!/bin/bash
# thirty-fourth session: the distill stage (more answers, features taken as decoded) until STOP, the
# answers kept in the checkout, then the prompts' own text as extra samples (each prompt as an
# answer to an empty question: the target's distribution over text it did not write, a prefill
# only) until PROMPT_MINUTES, then two heads continued from 33a for MINUTES each:
#   34a: the answer cache (new answers first: --fresh-from head)
#   34b: the answer cache and the prompt-text cache read as one (new samples first)
# and the held-out decoding walk of 33a, 34a, 34b. Resumable: each stage skips what exists.
set -x
cd "$(dirname "$0")/../.."
T=~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct; R=~/.cache/specscope/runs/e3_real
PY=.venv/bin/python
export OMP_NUM_THREADS=2
date
while [ "$(date +%s)" -lt "${STOP:-0}" ]; do sleep 30; done
pkill -f "tools.train.distill --target" ; sleep 5; pkill -f "scripts/e3_data.sh"; sleep 2
STAGES=keep bash scripts/e3_data.sh
date
[ -s $R/feats_prompts/.done ] || {
  timeout -s TERM "${PROMPT_MINUTES:-40}m" nice -n 10 $PY -m tools.train.features --target $T --data $R/prompt_text.jsonl \
    --out $R/feats_prompts --vocab $R/vocab_shipped.json --top-k 64 --max-tokens 384 --threads 2 --dtype bfloat16
  touch $R/feats_prompts/.done; }
date
COMMON=(--target $T --init-head $R/head_33a --init-from-target --ttt 3 --batch 4 --lr 5e-5 --intermediate-size 2048
  --autocast bfloat16 --threads 2 --minutes ${MINUTES:-20} --checkpoint-every 300 --heldout $R/feats_heldout
  --heldout-every 900 --seed 34 --fresh-from head)
[ -s $R/head_34a/model.safetensors ] || $PY -m tools.train eagle3 "${COMMON[@]}" --features $R/feats --run-dir $R/run34a --out $R/head_34a
date
[ -s $R/head_34b/model.safetensors ] || $PY -m tools.train eagle3 "${COMMON[@]}" --features $R/feats,$R/feats_prompts --run-dir $R/run34b --out $R/head_34b
date
$PY -m tools.train heldout --target $T --features $R/feats_heldout \
  --heads $R/head_33a,$R/head_34a,$R/head_34b --steps 3 --max-new 64 --autocast bfloat16 --threads 2 \
  --json $R/heldout34.json
date
