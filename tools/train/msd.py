"""Train an MSD-style draft head (core/drafters/msd.py) for any target the engine loads.

    python -m tools.train.msd --target assets/target --out assets/drafters/msd --minutes 15
    python -m tools.train.msd --target <hub id> --data distill.jsonl --out runs/msd-x --minutes 600
    accelerate launch -m tools.train.msd ...      (several GPUs: data-parallel over samples)

Per sample the frozen target runs once (no grad) to give its last hidden states f_t and its
decoder input embeddings (image features merged in). The head learns, for every pair
(f_t, token_{t+1}), to predict f_{t+1}:  loss = SmoothL1(h_t, f_{t+1}) + 0.1 * CE(target's
distribution at t+1, head's logits through the target's lm_head), with uniform feature noise.
MSD's two-stage curriculum: the first half of the budget sees text-only samples, then the
share of multimodal samples rises linearly to 1. Checkpointed and resumable (--resume).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core import adapters
from core.drafters.msd import MSDHead, is_msd_dir
from core.images import load_image


# ---------------------------------------------------------------- data
class SampleSource:
    """Scenes (with MSD's curriculum) or a JSONL of {"image": path|null, "prompt", "answer"}."""

    def __init__(self, data: str, seed: int = 0, style: str = "direct"):
        self.rng, self.style = random.Random(seed), style
        self.rows = None
        if data != "scenes":
            base = os.path.dirname(os.path.abspath(data))
            with open(data) as f:
                self.rows = [json.loads(line) for line in f if line.strip()]
            for r in self.rows:
                if r.get("image") and not os.path.isabs(r["image"]):
                    r["image"] = os.path.join(base, r["image"])
            self.text_rows = [r for r in self.rows if not r.get("image")]
            self.mm_rows = [r for r in self.rows if r.get("image")]
        self.counter = 0

    def get(self, p_multimodal: float) -> dict:
        want_mm = self.rng.random() < p_multimodal
        if self.rows is None:
            from tools.scenes.generator import train_seeds
            from tools.scenes.tasks import IMAGE_TASKS, make_sample

            self.counter += 1
            seed = train_seeds(1, start=500_000_000 + self.counter)[0]
            task = self.rng.choice(IMAGE_TASKS) if want_mm else "text"
            s = make_sample(seed, task=task, style=self.style)
            return {"image": s["image"], "prompt": s["prompt"], "answer": s["answer"]}
        pool = self.mm_rows if (want_mm and self.mm_rows) or not self.text_rows else self.text_rows
        r = self.rng.choice(pool)
        img = load_image(r["image"]) if r.get("image") else None
        return {"image": img, "prompt": r["prompt"], "answer": r["answer"]}


def curriculum(frac: float, text_frac: float = 0.5) -> float:
    """MSD: text-only for the first ``text_frac`` of the budget (half by default), then the
    multimodal share rising linearly to 1 over the rest."""
    if frac < text_frac:
        return 0.0
    return 1.0 if text_frac >= 1.0 else min(1.0, (frac - text_frac) / (1.0 - text_frac))


@torch.no_grad()
def target_features(target, sample: dict):
    """Token ids, last hidden states, decoder input embeddings and prompt length for one sample."""
    enc = target.encode(sample["prompt"], sample["image"])
    ans = target.tokenizer(sample["answer"], add_special_tokens=False)["input_ids"]
    eos = target.tokenizer.eos_token_id
    ids = torch.cat([enc.input_ids, torch.tensor([ans + ([eos] if eos is not None else [])])], dim=1)
    full = adapters.Encoded(ids, enc.extra, enc.has_image)
    sess, _, hidden = target.prefill(full, want_hidden=True)
    # clone: prefill runs in inference mode, whose tensors cannot enter autograd
    return ids[0].clone(), hidden.float().clone(), sess.embeds[0].float().clone(), enc.length


# ---------------------------------------------------------------- training
def head_loss(head, target, batch, noise: float, image_token_id):
    embed = target.model.get_input_embeddings()
    lm_head = target.model.get_output_embeddings()
    losses = []
    for ids, f, emb_in, plen in batch:
        nxt = ids[1:]
        with torch.no_grad():
            tok_emb = embed(nxt).float()
        feat = f[:-1] + (torch.rand_like(f[:-1]) - 0.5) * noise
        is_vis = (nxt == image_token_id) if image_token_id is not None else None
        x = head.fuse(tok_emb, feat, emb_in[1:], is_vis)
        L = x.shape[0]
        h = head(x.unsqueeze(0), torch.arange(L).view(1, -1), _causal(L, x.dtype), None)[0]
        start = max(plen - 2, 0)
        h, tgt = h[start:], f[1:][start:]
        reg = F.smooth_l1_loss(h, tgt)
        with torch.no_grad():
            p = torch.softmax(lm_head(tgt.to(lm_head.weight.dtype)).float(), -1)
        logq = torch.log_softmax(lm_head(h.to(lm_head.weight.dtype)).float(), -1)
        ce = -(p * logq).sum(-1).mean()
        losses.append((reg + 0.1 * ce, reg.detach(), ce.detach(), (logq.argmax(-1) == p.argmax(-1)).float().mean()))
    loss = torch.stack([x[0] for x in losses]).mean()
    stats = [torch.stack([x[i] for x in losses]).mean().item() for i in (1, 2, 3)]
    return loss, stats


def _causal(n, dtype):
    m = torch.full((n, n), torch.finfo(dtype).min, dtype=dtype).triu(1)
    return m.view(1, 1, n, n)


def main(argv=None):
    from tools.scenes.tasks import ANSWER_STYLES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="assets/target")
    ap.add_argument("--out", default="assets/drafters/msd")
    ap.add_argument("--data", default="scenes", help="'scenes' or a JSONL of {image, prompt, answer}")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (smoke test)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--init",
        default=None,
        help="start from a trained head directory (e.g. the head of the target before it "
        "was grown or fine-tuned) instead of random weights",
    )
    ap.add_argument(
        "--text-frac",
        type=float,
        default=0.5,
        help="share of the budget that is text-only (MSD stage 1) before the multimodal share rises to 1",
    )
    ap.add_argument(
        "--answer-style",
        default="direct",
        choices=ANSWER_STYLES,
        help="with --data scenes: the answer style the target was trained on (tools.scenes.tasks.make_sample)",
    )
    args = ap.parse_args(argv)
    if not 0.0 <= args.text_frac <= 1.0:
        ap.error("--text-frac must be in [0, 1]")
    if args.init and not is_msd_dir(args.init):
        ap.error(f"--init {args.init!r} is not an MSD head directory (config.json + model.safetensors)")
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir or f"runs/{Path(args.out).name}")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "ckpt.pt"

    try:
        from accelerate import Accelerator

        acc = Accelerator(cpu=not torch.cuda.is_available())
    except Exception:  # accelerate is optional for a single process
        acc = None
    target = adapters.load(args.target, dtype="float32")
    for p in target.model.parameters():
        p.requires_grad_(False)
    tc = getattr(target.model.config, "text_config", None) or target.model.config
    image_token_id = getattr(target.model.config, "image_token_id", None) or getattr(target.model.config, "image_token_index", None)
    torch.manual_seed(0)
    head = MSDHead(MSDHead.make_config(tc)) if not args.init else MSDHead.load(args.init, dtype=torch.float32).train()
    if head.config.hidden_size != tc.hidden_size:
        ap.error(f"--init head has hidden size {head.config.hidden_size}, the target {tc.hidden_size}")
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step, elapsed = 0, 0.0
    if args.resume and ckpt.exists():
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        head.load_state_dict(ck["head"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
    if acc is not None:
        head, opt = acc.prepare(head, opt)
    src = SampleSource(args.data, seed=step, style=args.answer_style)
    total = args.minutes * 60
    t0 = time.time() - elapsed
    last_ck = time.time()
    log = open(run_dir / "log.txt", "a")
    hist = []
    while True:
        elapsed = time.time() - t0
        if elapsed >= total or (args.steps and step >= args.steps):
            break
        frac = elapsed / total
        pm = curriculum(frac, args.text_frac)
        batch = [target_features(target, src.get(pm)) for _ in range(args.batch)]
        lr = args.lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        loss, (reg, ce, top1) = head_loss(head, target, batch, args.noise, image_token_id)
        opt.zero_grad(set_to_none=True)
        (acc.backward(loss) if acc is not None else loss.backward())
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        step += 1
        hist.append(top1)
        if step % 10 == 0 or args.steps:
            msg = (
                f"{time.strftime('%H:%M:%S')} step {step} loss {loss.item():.4f} reg {reg:.4f} ce {ce:.3f} "
                f"top1 {sum(hist[-10:]) / len(hist[-10:]):.3f} p_mm {pm:.2f} lr {lr:.2e} elapsed {elapsed:.0f}s"
            )
            print(msg, flush=True)
            log.write(msg + "\n")
            log.flush()
        if time.time() - last_ck > 300:
            torch.save({"head": _unwrap(head, acc).state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": time.time() - t0}, ckpt)
            last_ck = time.time()
    head = _unwrap(head, acc)
    torch.save({"head": head.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": time.time() - t0}, ckpt)
    head.save(
        args.out,
        extra={
            "target": str(args.target),
            "steps": step,
            "minutes": round((time.time() - t0) / 60, 1),
            "data": args.data,
            "init": args.init,
            "top1_last100": round(sum(hist[-100:]) / max(1, len(hist[-100:])), 4),
        },
    )
    print(f"saved {args.out} after {step} steps", flush=True)


def _unwrap(m, acc):
    return acc.unwrap_model(m) if acc is not None else m


if __name__ == "__main__":
    main()
