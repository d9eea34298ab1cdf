#!/bin/bash
# The reverse of the export check: a checkpoint saved by vLLM's `speculators` library itself loads in
# SpecScope. speculators 0.9.0 loads HEAD (its verifier pointed at the local TARGET folder, offline),
# saves it again, and SpecScope decodes with both (chain of 3, eager forward): outputs identical to
# plain decoding, and the taus printed side by side.
#
#   bash scripts/speculators_check.sh [HEAD] [TARGET]
#
# speculators pins transformers <= 5.19, as vLLM does, so it lives outside the project's venv: a venv
# that sees vLLM's (bash scripts/vllm_venv.sh first) with speculators installed without its
# dependencies, plus the two it imports that vLLM lacks. Not in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
HEAD=${1:-assets/drafters/eagle3_coder}
TARGET=${2:-$HOME/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct}
VLLM=${SPECSCOPE_VLLM_VENV:-$HOME/.cache/specscope/vllm-venv}
VENV=${SPECSCOPE_SPECULATORS_VENV:-$HOME/.cache/specscope/speculators-venv}
WORK=${WORK:-$(mktemp -d)}
[ -x "$VLLM/bin/python" ] || { echo "no vLLM venv at $VLLM: bash scripts/vllm_venv.sh first" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  "$VLLM/bin/python" -m venv --without-pip "$VENV" 2>/dev/null || python3 -m venv "$VENV"
  "$VLLM/bin/python" -c "import site; print(site.getsitepackages()[0])" > "$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')/vllm_site.pth"
  "$VENV/bin/python" -m pip install -q --no-deps speculators==0.9.0 hs-connectors
  "$VENV/bin/python" -m pip install -q "datasets<=5.1.0"
fi
mkdir -p "$WORK/src"
cp "$HEAD/config.json" "$HEAD/model.safetensors" "$WORK/src/"
"$VENV/bin/python" - "$WORK/src/config.json" "$TARGET" <<'PY'
import json, sys
p, target = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["speculators_config"]["verifier"]["name_or_path"] = target  # offline: the local target's weights
json.dump(c, open(p, "w"), indent=1)
PY
HF_HUB_OFFLINE=1 "$VENV/bin/python" scripts/speculators_resave.py "$WORK/src" "$WORK/resaved"
P='Write a Python function merge_intervals(intervals) that merges overlapping intervals.'
for D in "$HEAD" "$WORK/resaved"; do
  echo "== SpecScope with $D"
  SPECSCOPE_COMPILE=off .venv/bin/python -m core compare --target "$TARGET" --drafter "eagle3:$D" --strategy chain \
    --gamma 3 --dtype auto --prompt "$P" --max-new-tokens 48 2>&1 | grep -E "^spec|identical|UserWarning" || true
done
