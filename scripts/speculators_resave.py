"""Run inside the speculators virtualenv (scripts/speculators_check.sh): speculators itself loads an
EAGLE-3 head directory and saves it again its own way, then lists what it wrote.

    python scripts/speculators_resave.py HEAD_DIR OUT_DIR
"""

import glob
import json
import sys

import torch
from safetensors import safe_open
from speculators.models.eagle3 import Eagle3DraftModel

src, out = sys.argv[1], sys.argv[2]
m = Eagle3DraftModel.from_pretrained(src, dtype=torch.bfloat16)
print(f"speculators loaded {src}: {type(m).__name__}, draft vocabulary {int(m.t2d.sum())} ids")
m.save_pretrained(out)
cfg = json.load(open(f"{out}/config.json"))
print(f"saved {out}: config keys {sorted(cfg)}")
for f in sorted(glob.glob(f"{out}/*.safetensors")):
    with safe_open(f, "pt") as g:
        for k in sorted(g.keys()):
            t = g.get_tensor(k)
            note = ""
            if t.is_floating_point():
                note = "all zeros" if not bool(t.any()) else ("not finite" if not bool(torch.isfinite(t).all()) else "")
            print(f"  {k} {tuple(t.shape)} {str(t.dtype).replace('torch.', '')} {note}".rstrip())
