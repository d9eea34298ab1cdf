"""Grid pretraining of the default target: teach its vision tower what is where, apart from (and then alongside)
learning to talk about it.

Learning only from answer text, the target's ViT learns colour/shape/position binding very
slowly on 2 CPU cores (80 min: 0.21 held-out accuracy; the per-patch probe of the joint run was
near chance after 600 steps). The scene generator knows the content of each 3x3 cell, so here the
vision tower + projector alone are trained, with big cheap batches (no language model in the
loop), to make every image token predict the content of its cell: kind (empty / word / shape),
colour, size and word (``tools.train.common.grid_labels``). The language model is untouched; then
``tools.train.target --init OUT`` continues joint training (keeping the grid loss).

    python -m tools.train.grid_pretrain --init assets/target --out runs/grid/model --minutes 12
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from tools.train.common import IMAGE_TOKENS, AuxGridHeads, grid_labels, lr_at, require_model_dir, save_final


def render_pool(image_processor, seeds):
    from tools.scenes.tasks import make_sample

    samples = [make_sample(s, task="describe") for s in seeds]
    pix = image_processor(images=[s["image"] for s in samples], return_tensors="pt")["pixel_values"]
    labs = [grid_labels(s["meta"]) for s in samples]
    return pix, {k: torch.tensor([l[k] for l in labs]) for k in labs[0]}


def image_tokens(model, pixel_values):
    """What the language model reads for these images: projector(selected ViT features)."""
    feats = model.model.get_image_features(pixel_values=pixel_values)
    if hasattr(feats, "pooler_output"):  # transformers 5 returns a ModelOutput
        feats = feats.pooler_output
    if isinstance(feats, (list, tuple)):
        feats = torch.stack(list(feats))
    return feats.reshape(pixel_values.shape[0], IMAGE_TOKENS, -1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", default="assets/target", help="target model directory to start from")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (smoke test)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pool", type=int, default=4096, help="pre-rendered scenes kept in memory")
    ap.add_argument("--refresh", type=int, default=16, help="new scenes swapped into the pool per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed-offset", type=int, default=0, help="first training-scene seed (a continued stage sees new scenes)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    require_model_dir(ap, args.init, "--init")

    from transformers import AutoProcessor, LlavaForConditionalGeneration

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    processor = AutoProcessor.from_pretrained(args.init)
    model = LlavaForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    trained = list(model.model.vision_tower.parameters()) + list(model.model.multi_modal_projector.parameters())
    for p in trained:
        p.requires_grad_(True)
    aux = AuxGridHeads(model.config.text_config.hidden_size)
    if (Path(args.init) / "grid_heads.pt").exists():  # continuing an earlier grid run
        aux.load_state_dict(torch.load(Path(args.init) / "grid_heads.pt", map_location="cpu"))
        print(f"grid heads from {args.init}", flush=True)
    opt = torch.optim.AdamW(trained + list(aux.parameters()), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.05)

    t0 = time.time()
    pix, labs = render_pool(processor.image_processor, range(args.seed_offset, args.seed_offset + args.pool))
    next_seed = args.pool + args.seed_offset
    print(f"pool of {args.pool} scenes rendered in {time.time() - t0:.0f}s", flush=True)

    budget = args.minutes * 60
    t_start = time.time()
    step, acc_sum, loss_sum, n = 0, {}, 0.0, 0
    model.train()
    while True:
        frac = (time.time() - t_start) / budget
        if frac >= 1 or (args.steps and step >= args.steps):
            break
        lr = lr_at(step, frac, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, args.pool, (args.batch,))
        feats = image_tokens(model, pix[idx])
        loss, accs = aux.loss(feats, {k: v[idx] for k, v in labs.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained + list(aux.parameters()), 1.0)
        opt.step()
        step += 1
        # keep the pool fresh: swap in a few never-seen training scenes
        slots = random.Random(step).sample(range(args.pool), args.refresh)
        p2, l2 = render_pool(processor.image_processor, range(next_seed, next_seed + args.refresh))
        next_seed += args.refresh
        pix[slots] = p2
        for k in labs:
            labs[k][slots] = l2[k]
        loss_sum += loss.item()
        n += 1
        for k, v in accs.items():
            acc_sum[k] = acc_sum.get(k, 0.0) + v
        if step % 50 == 0 or args.steps:
            print(
                f"step {step} loss {loss_sum / n:.4f} lr {lr:.2e} "
                + " ".join(f"{k} {v / n:.3f}" for k, v in acc_sum.items())
                + f" elapsed {time.time() - t_start:.0f}s",
                flush=True,
            )
            acc_sum, loss_sum, n = {}, 0.0, 0

    out = Path(args.out)
    save_final(model, processor, out)
    torch.save(aux.state_dict(), out / "grid_heads.pt")
    print(f"saved to {out} after {step} steps", flush=True)


if __name__ == "__main__":
    main()
