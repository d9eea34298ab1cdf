#!/bin/bash
# twenty-fourth session: features taken while distilling (--features) against distill + the features command,
# the same 64 unanswered prompts, both cores, one after the other
cd /work/main
T=~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct; R=~/.cache/specscope/runs/e3_real; D=$R/fused_trial
PY=.venv/bin/python
export OMP_NUM_THREADS=2
for c in cacheA cacheB; do mkdir -p $D/$c; cp $R/feats20/meta.json $R/feats20/vocab.json $D/$c/; done
lscpu | grep "Model name"; date
s=$(date +%s.%N)
$PY -m tools.train.distill --target $T --prompts $D/prompts.jsonl --out $D/fused.jsonl --batch 32 --window 2 \
  --max-new-tokens 128 --threads 2 --dtype bfloat16 --kernels packed --features $D/cacheA
e=$(date +%s.%N); echo "FUSED $(echo "$e - $s" | bc) s"
s=$(date +%s.%N)
$PY -m tools.train.distill --target $T --prompts $D/prompts.jsonl --out $D/plain.jsonl --batch 32 --window 2 \
  --max-new-tokens 128 --threads 2 --dtype bfloat16 --kernels packed
e=$(date +%s.%N); echo "DISTILL $(echo "$e - $s" | bc) s"
s=$(date +%s.%N)
$PY -m tools.train.features --target $T --data $D/plain.jsonl --out $D/cacheB --vocab $R/vocab_9a.json \
  --top-k 64 --max-tokens 384 --threads 2 --dtype bfloat16
e=$(date +%s.%N); echo "FEATURES $(echo "$e - $s" | bc) s"
date
