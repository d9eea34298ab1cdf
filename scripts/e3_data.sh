#!/usr/bin/env bash
# The EAGLE-3 head's training data for the real Qwen2.5-Coder-1.5B target, resumable across sessions
# (assets/drafters/eagle3_coder/TRAINING.md): the code prompts, the target's own greedy answers,
# then the feature cache. Kept under ~/.cache/specscope/runs (outside the checkout, which a new
# session may not keep). Run in the background, niced, on one thread:
#   setsid nohup bash scripts/e3_data.sh > ~/.cache/specscope/runs/e3_real/data.log 2>&1 < /dev/null &
# STAGES=distill (or features) runs one stage only. Each stage resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
T=${T:-$HOME/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct}
R=${R:-$HOME/.cache/specscope/runs/e3_real}
N=${N:-4000}
STAGES=${STAGES:-distill features}
mkdir -p "$R"
export OMP_NUM_THREADS=1
[ -s "$R/prompts.jsonl" ] || $PY -m tools.train.code_prompts --out "$R/prompts.jsonl" --n "$N" --seed 0 --heldout 200
for stage in $STAGES; do
  case $stage in
    distill) nice -n 10 $PY -m tools.train.distill --target "$T" --prompts "$R/prompts.jsonl" --out "$R/train.jsonl" \
        --batch 32 --window 4 --max-new-tokens 128 --threads 1 --dtype bfloat16 --kernels stock ;;
    features) nice -n 10 $PY -m tools.train.features --target "$T" --data "$R/train.jsonl" --out "$R/feats" \
        --draft-vocab 8192 --vocab-samples 512 --top-k 64 --max-tokens 384 --threads 1 --dtype bfloat16 --wait-minutes 5 ;;
  esac
done
