#!/bin/bash
# twenty-third session: reference-row features until 07:45, then 22a continued 300 steps (lr 5e-5) on
# (a) feats20 (answers it has seen) and (b) feats_ref (real code it has not), one thread each, in parallel;
# then both and 22a on the held-out decoding walk
set -x
cd /work/main
T=~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct; R=~/.cache/specscope/runs/e3_real
PY=.venv/bin/python
end=$(date -d "07:45" +%s)
while pgrep -f "tools.train.features --target" > /dev/null && [ $(date +%s) -lt $end ]; do sleep 15; done
pkill -f "tools.train.features --target"; sleep 8
date; ls $R/feats_ref | wc -l
for v in a:feats20 b:feats_ref; do
  n=${v%%:*}; f=${v#*:}
  OMP_NUM_THREADS=1 $PY -m tools.train eagle3 --target $T --features $R/$f --init-head $R/head_22a \
    --init-from-target --ttt 3 --batch 4 --lr 5e-5 --intermediate-size 2048 --autocast bfloat16 --threads 1 \
    --steps 300 --minutes 60 --checkpoint-every 300 --heldout-every 100000 --seed 23 \
    --run-dir $R/run23$n --out $R/head_23$n > $R/train23$n.log 2>&1 &
done
wait
date
OMP_NUM_THREADS=2 $PY -m tools.train heldout --target $T --features $R/feats_heldout \
  --heads $R/head_22a,$R/head_23a,$R/head_23b --steps 3 --max-new 64 --autocast bfloat16 --threads 2 \
  --json $R/heldout23.json
date
