"""The twenty-fourth session's comparison of two feature caches of the same answers: cacheA written
while distilling (distill --features), cacheB by the features command (docs/results/fused_trial24.sh)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from tools.train.features import FeatureCache

D = os.path.expanduser("~/.cache/specscope/runs/e3_real/fused_trial")
a = {s["key"]: s for s in FeatureCache(f"{D}/cacheA").samples}
b = {s["key"]: s for s in FeatureCache(f"{D}/cacheB").samples}
common = sorted(set(a) & set(b))
print("records", len(a), len(b), "common keys", len(common))
same_ids, rel, top1, tv = 0, [], [], []
for k in common:
    x, y = a[k], b[k]
    ix, iy = x["ids"].tolist(), y["ids"].tolist()
    same_ids += ix == iy
    n = next((i for i, (p, q) in enumerate(zip(ix, iy)) if p != q), min(len(ix), len(iy)))
    n = min(n, len(ix) - 1)  # rows where both caches know the aux
    ax, ay = x["aux"][:n].float(), y["aux"][:n].float()
    rel.append(float((ax - ay).norm() / ay.norm()))
    m = n - int(x["prompt_len"]) + 1
    if m > 0:
        top1.append(float((x["topk_ids"][:m, 0] == y["topk_ids"][:m, 0]).float().mean()))
        for r in range(m):  # total variation between the two top-k distributions, on their union
            px = dict(zip(x["topk_ids"][r].tolist(), x["topk_p"][r].float().tolist()))
            py = dict(zip(y["topk_ids"][r].tolist(), y["topk_p"][r].float().tolist()))
            tv.append(0.5 * sum(abs(px.get(t, 0) - py.get(t, 0)) for t in set(px) | set(py)))
print("identical ids", same_ids, "of", len(common))
print(f"aux relative difference: mean {sum(rel) / len(rel):.4f} max {max(rel):.4f}")
print(f"top-1 agreement {sum(top1) / len(top1):.4f}", f"mean total variation of the top-k {sum(tv) / len(tv):.4f}")
print("tokens", sum(s["ids"].shape[0] for s in a.values()), sum(s["ids"].shape[0] for s in b.values()))
