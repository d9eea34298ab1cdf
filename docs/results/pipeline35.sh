#!/bin/bash
# thirty-fifth session: the answer feature cache relabelled over a new draft vocabulary (the 8192 most
# frequent answer tokens of all its samples, where the shipped one was fixed from the first 1000
# samples' prompts and answers), by the target's last three layers from the cached residual
# (tools/train/revocab.py), then 35a continued from 34a on it for MINUTES (new samples first, the new
# vocabulary's rows from the target's output layer), then the held-out decoding walk of 33a, 34a, 35a.
# Resumable: each stage skips what exists.
set -x
cd "$(dirname "$0")/../.."
T=~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct; R=~/.cache/specscope/runs/e3_real
PY=.venv/bin/python
export OMP_NUM_THREADS=2
date
while pgrep -f "tools.train.revocab --target" > /dev/null; do sleep 20; done
$PY -m tools.train.revocab --target $T --features $R/feats --out $R/feats_v35 --draft-vocab 8192 --threads 2 || exit 1
date
COMMON=(--target $T --init-head $R/head_34a --init-from-target --ttt 3 --batch 4 --lr 5e-5 --intermediate-size 2048
  --autocast bfloat16 --threads 2 --minutes ${MINUTES:-45} --checkpoint-every 300 --heldout $R/feats_heldout
  --heldout-every 900 --seed 35 --fresh-from head)
[ -s $R/head_35a/model.safetensors ] || $PY -m tools.train eagle3 "${COMMON[@]}" --features $R/feats_v35 --run-dir $R/run35a --out $R/head_35a
date
$PY -m tools.train heldout --target $T --features $R/feats_heldout \
  --heads $R/head_33a,$R/head_34a,$R/head_35a --steps 3 --max-new 64 --autocast bfloat16 --threads 2 \
  --json $R/heldout35.json
date
# then 35b: 35a continued for MINUTES_B on the same relabelled cache (a second pass at a fresh learning
# rate), and the walk of 35a and 35b
[ -s $R/head_35b/model.safetensors ] || $PY -m tools.train eagle3 --target $T --init-head $R/head_35a --init-from-target \
  --ttt 3 --batch 4 --lr 5e-5 --intermediate-size 2048 --autocast bfloat16 --threads 2 --minutes ${MINUTES_B:-40} \
  --checkpoint-every 300 --heldout $R/feats_heldout --heldout-every 900 --seed 36 \
  --features $R/feats_v35 --run-dir $R/run35b --out $R/head_35b
$PY -m tools.train heldout --target $T --features $R/feats_heldout \
  --heads $R/head_33a,$R/head_35a,$R/head_35b --steps 3 --max-new 64 --autocast bfloat16 --threads 2 \
  --json $R/heldout35b.json
date
