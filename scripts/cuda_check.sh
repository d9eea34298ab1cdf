#!/usr/bin/env bash
# On a machine with a CUDA GPU: the losslessness tests on CUDA, then a short bench there.
# A few minutes in all. Needs a CUDA build of torch in the environment (PY, default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, '|', torch.cuda.get_device_name() if ok else 'no CUDA GPU'); sys.exit(0 if ok else 3)" \
  || { echo "cuda_check: no CUDA GPU visible; nothing to check (the CPU tests are bash scripts/test.sh)"; exit 0; }
"$PY" -m pytest -q tests/test_cuda.py tests/test_device.py
# the row-invariant group on this GPU (core/rows.py) and speculative == plain decoding, in both dtypes
for dt in bfloat16 float32; do "$PY" scripts/exact_check.py --device cuda --dtype $dt --max-new-tokens 32; done
"$PY" -m tools.bench --device cuda --dtype auto --n 4 --max-new-tokens 48 --strategies auto,chain,dynamic \
  --drafters msd,small-vlm,ngram --temperatures 0 --hf plain
