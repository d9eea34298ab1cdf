"""Grow a trained LLaVA target deeper (and its MLPs wider) without changing what it computes.

Training a bigger target from scratch on 2 CPU cores costs hours; growing the trained one keeps
everything it already knows and adds capacity that later training can use (the idea of Net2Net
and of "progressive stacking"):

- **depth**: after some of the existing decoder layers, a copy of that layer is inserted with its
  two output projections (attention ``o_proj`` and MLP ``down_proj``) set to zero. A decoder layer
  adds ``o_proj(...)`` and ``down_proj(...)`` to the residual stream, so the copy adds exactly zero:
  the grown model's logits are those of the original, bit for bit in float32. Its other weights
  are the copied layer's, so the first gradient steps already see useful features.
- **MLP width**: new hidden units get small random ``gate``/``up`` rows and zero ``down`` columns,
  so they too add zero until trained.

    python -m tools.train.grow --init assets/target --out runs/grown/model --layers 12 --intermediate 1024

The result is a normal ``save_pretrained`` directory (model + processor, plus the auxiliary grid
heads when the source has them); continue with ``python -m tools.train.target --init <out> ...``,
which takes the architecture from ``--init``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch


def insert_positions(old: int, new: int) -> list[int]:
    """Old layer index each new layer copies, the copies placed evenly after the originals:
    6 -> 12 gives [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]; 6 -> 9 gives [0, 1, 1, 2, 3, 3, 4, 5, 5]."""
    if new < old:
        raise ValueError(f"cannot grow {old} layers to {new}")
    extra = new - old
    copies = [extra // old] * old
    r = extra % old
    for i in range(r):  # the remainder spread evenly, ending at the last layer
        copies[round((i + 1) * old / r) - 1] += 1
    return [j for j in range(old) for _ in range(1 + copies[j])]


def grow(model, layers: int | None = None, intermediate: int | None = None, seed: int = 0):
    """A new LlavaForConditionalGeneration that computes exactly what ``model`` computes, with
    ``layers`` decoder layers and MLPs of width ``intermediate`` (None: unchanged)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    cfg = model.config.to_dict()
    tc = cfg["text_config"]
    old_layers, old_inter = tc["num_hidden_layers"], tc["intermediate_size"]
    layers = layers or old_layers
    intermediate = intermediate or old_inter
    if intermediate < old_inter:
        raise ValueError(f"cannot shrink the MLP from {old_inter} to {intermediate}")
    tc["num_hidden_layers"] = layers
    tc["intermediate_size"] = intermediate
    tc.pop("layer_types", None)
    new_cfg = LlavaConfig.from_dict(cfg)
    torch.manual_seed(seed)
    new = LlavaForConditionalGeneration(new_cfg).to(torch.float32)

    old_sd = {k: v.to(torch.float32) for k, v in model.state_dict().items()}
    sd = {k: v for k, v in old_sd.items() if ".layers." not in k or "language_model" not in k}
    src = insert_positions(old_layers, layers)
    seen = set()
    prefix = next(k.split(".layers.")[0] for k in old_sd if "language_model" in k and ".layers." in k)
    for i, j in enumerate(src):
        copy = j in seen
        seen.add(j)
        for k, v in old_sd.items():
            if not k.startswith(f"{prefix}.layers.{j}."):
                continue
            name = k[len(f"{prefix}.layers.{j}.") :]
            v = v.clone()
            if copy and name in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
                v.zero_()
            if copy and name.endswith("_proj.bias") and name.split(".")[-2] in ("o_proj", "down_proj"):
                v.zero_()
            if intermediate > old_inter:
                extra = intermediate - old_inter
                if name in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
                    v = torch.cat([v, torch.randn(extra, v.shape[1]) * 0.02])
                elif name == "mlp.down_proj.weight":
                    v = torch.cat([v, torch.zeros(v.shape[0], extra)], dim=1)
            sd[f"{prefix}.layers.{i}.{name}"] = v
    missing, unexpected = new.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "rotary_emb" not in m]
    if missing or unexpected:
        raise RuntimeError(f"grow: missing {missing[:5]} unexpected {unexpected[:5]}")
    try:
        new.generation_config = model.generation_config
    except Exception:  # pragma: no cover
        pass
    return new.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="a LLaVA model directory (save_pretrained)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=None, help="decoder layers after growing")
    ap.add_argument("--intermediate", type=int, default=None, help="MLP width after growing")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from tools.train.common import require_model_dir

    require_model_dir(ap, args.init, "--init", model_type="llava")
    try:
        src = LlavaForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
    except (OSError, ValueError) as e:  # unreadable weights
        ap.error(f"--init {args.init!r}: {str(e).splitlines()[0]}")
    old = src.config.text_config
    if args.layers is not None and args.layers < old.num_hidden_layers:
        ap.error(f"--layers {args.layers} is fewer than the {old.num_hidden_layers} the model has")
    if args.intermediate is not None and args.intermediate < old.intermediate_size:
        ap.error(f"--intermediate {args.intermediate} is narrower than the model's {old.intermediate_size}")
    new = grow(src, args.layers, args.intermediate, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    new.save_pretrained(out)
    AutoProcessor.from_pretrained(args.init).save_pretrained(out)
    for extra in ("grid_heads.pt", "count_heads.pt"):
        if (Path(args.init) / extra).exists():
            shutil.copy(Path(args.init) / extra, out / extra)
    n_old = sum(p.numel() for p in src.parameters())
    n_new = sum(p.numel() for p in new.parameters())
    print(
        f"grew {args.init} ({old.num_hidden_layers} layers, MLP {old.intermediate_size}, "
        f"{n_old / 1e6:.1f}M params) -> {out} ({new.config.text_config.num_hidden_layers} layers, "
        f"MLP {new.config.text_config.intermediate_size}, {n_new / 1e6:.1f}M params)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
