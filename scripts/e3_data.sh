#!/usr/bin/env bash
# The EAGLE-3 head's training data for the real Qwen2.5-Coder-1.5B target, resumable across sessions
# (assets/drafters/eagle3_coder/TRAINING.md): the code prompts, the target's own greedy answers,
# then the feature cache. Kept under ~/.cache/specscope/runs (outside the checkout, which a new
# session may not keep). Run in the background, niced, on one thread:
#   setsid nohup bash scripts/e3_data.sh > ~/.cache/specscope/runs/e3_real/data.log 2>&1 < /dev/null &
# STAGES=distill (or features) runs one stage only. Each stage resumes where it stopped.
# ~/.cache does not survive a change of machine: `STAGES=keep` copies the answers so far (text,
# compressed) into the checkout ($KEEP, to commit), and a fresh cache starts from that copy.
# DTYPE: the target's dtype, "auto" by default (bfloat16 where the CPU computes it natively, else
# float32, measured): the answers are the target's own either way. THREADS: torch threads (default 1).
# BATCH: prompts decoded together (default 32; on the 2-core Zen 5, 64 at a time ran 60 answer tokens/s
# against 53-64 for 32 in the same hour: within the machine's noise).
# VOCAB=shipped: the feature cache takes the shipped head's draft vocabulary (its d2t), so a run
# continued from that head carries every lm_head row over (TRAINING.md, twentieth section); by
# default a new vocabulary is counted from the first answers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
T=${T:-$HOME/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct}
R=${R:-$HOME/.cache/specscope/runs/e3_real}
N=${N:-4000}
DTYPE=${DTYPE:-auto}
KEEP=${KEEP:-assets/drafters/eagle3_coder/data/answers.jsonl.gz}
STAGES=${STAGES:-distill features}
mkdir -p "$R"
export OMP_NUM_THREADS=${THREADS:-1}
[ -s "$R/prompts.jsonl" ] || $PY -m tools.train.code_prompts --out "$R/prompts.jsonl" --n "$N" --seed 0 --heldout 200
# more prompts (twenty-fifth session): seed 1, new functions only, none from the held-out packages
[ -s "$R/prompts_s1.jsonl" ] || $PY -m tools.train.code_prompts --out "$R/prompts_s1.jsonl" --n 8000 --seed 1 --heldout 200 \
  --not-sources "$R/prompts.jsonl" --not-packages "$R/prompts.heldout.jsonl" docs/results/e3_heldout_prompts.jsonl
if [ ! -s "$R/train.jsonl" ] && [ -s "$KEEP" ]; then
  gunzip -c "$KEEP" > "$R/train.jsonl"
  echo "resumed from $KEEP: $(wc -l < "$R/train.jsonl") answers"
fi
for stage in $STAGES; do
  case $stage in
    # once the feature cache exists (its vocabulary is fixed from the first answers), the answers'
    # features are taken while they are decoded (distill --features): no second pass over them
    distill) FEATS=(); [ -s "$R/feats/vocab.json" ] && FEATS=(--features "$R/feats")
        for P in prompts.jsonl prompts_s1.jsonl; do
        nice -n 10 $PY -m tools.train.distill --target "$T" --prompts "$R/$P" --out "$R/train.jsonl" \
        --batch "${BATCH:-32}" --window 4 --max-new-tokens 128 --threads "$OMP_NUM_THREADS" --dtype "$DTYPE" --kernels stock "${FEATS[@]}"
        done ;;
    features) VOC=(--draft-vocab 8192 --vocab-samples 512)
        if [ "${VOCAB:-}" = shipped ]; then
          [ -s "$R/vocab_shipped.json" ] || $PY - "$R/vocab_shipped.json" <<'PY'
import json, sys
from safetensors import safe_open
d2t = safe_open("assets/drafters/eagle3_coder/model.safetensors", "pt").get_tensor("d2t")
json.dump({"draft_to_target": [i + int(d2t[i]) for i in range(d2t.numel())]}, open(sys.argv[1], "w"))
PY
          VOC=(--vocab "$R/vocab_shipped.json")
        fi
        nice -n 10 $PY -m tools.train.features --target "$T" --data "$R/train.jsonl" --out "$R/feats" \
        "${VOC[@]}" --top-k 64 --max-tokens 384 --threads "$OMP_NUM_THREADS" --dtype "$DTYPE" --wait-minutes 5 ;;
    keep) mkdir -p "$(dirname "$KEEP")" && gzip -9 -c "$R/train.jsonl" > "$KEEP.tmp" && mv "$KEEP.tmp" "$KEEP"
        echo "kept $(wc -l < "$R/train.jsonl") answers in $KEEP ($(du -h "$KEEP" | cut -f1))" ;;
    *) echo "unknown stage $stage (distill, features, keep)" >&2; exit 2 ;;
  esac
done
