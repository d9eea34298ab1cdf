"""Held-out acceptance of EAGLE-3 heads, from a feature cache of samples they never trained on.

    python -m tools.train heldout --target $T --features runs/e3_real/feats_heldout \
        --heads assets/drafters/eagle3_coder,runs/e3_real/head_20a --steps 3

A chain of ``--steps`` drafts from every answer position of every cached sample, as the engine drafts
it: step 0 reads the target's fused features of the positions so far and the last token, step j the
head's own output of step j - 1 (``ttt_loss``'s training-time test, run without gradients). A draft
is accepted when it is the answer's next token (the cache's answers are the target's greedy ones), and
a chain stops at its first miss, so at each position the accepted run is the number of leading steps
right. Reported per head:

* ``accepted by position``: the share of chains whose first d drafts were all accepted (vLLM's
  "acceptance at draft position d");
* ``mean accepted length``: 1 + the mean run (the bonus token of the verify counted, as tau);
* ``top-1 per step``: the draft equals the next answer token at step j, whatever the earlier steps;
* ``in vocabulary``: the share of first drafts' answer tokens the head's draft vocabulary holds (the
  ceiling of its first position's acceptance);
* ``decoding mean accepted length``: the same over the chains a decoding would draft (``walk``):
  the first from the prefill's token, each next one just past the last one's accepted drafts and
  the verify's bonus token, within the first ``--max-new`` answer tokens (0: all).

Every position is a chain's start for the first figures, where in decoding only the positions just
after a verify are. Those read higher: acceptance comes in runs, and a decoding passes through a run
of easy tokens in few chains and through hard text in many. The first figures compare heads on the
same positions; the decoding walk is the one to hold against the engine's tau. Hundreds of
held-out samples cost seconds a head (no target forward: the cache holds its features), so a
training run can log the curve as it goes (``tools.train.eagle3 --heldout``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from core.drafters.eagle3 import Eagle3Head


@torch.no_grad()
def chain_drafts(
    head: Eagle3Head, target, feats: dict, steps: int = 3, dtype=None, image_token_id=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's chain of ``steps`` drafts (target ids) from every answer position of one sample
    (``FeatureCache.feats``): (starts, drafts (len(starts), steps)). Row t has seen the target's
    features up to position t and the token at t + 1; its step-j draft stands for the token at
    t + 2 + j. Only the rows the engine drafts from (after the prefill's token: the first draft is the
    second answer token or later) whose last draft still lies in the sample. ``image_token_id``: a
    multimodal target's, so image positions read the cached image embeddings as in training."""
    from tools.train.eagle3 import ttt_loss

    d2t = head.draft_to_target()
    # the loss ttt_loss computes on the way is not used: its sparse targets only kept in range of
    # this head's vocabulary, which may not be the cache's
    feats = dict(feats, topk_ids=feats["topk_ids"].clamp(max=d2t.numel() - 1)) if feats.get("topk_ids") is not None else feats
    ids, plen = feats["ids"], feats["prompt_len"]
    T = ids.shape[0]
    rows = torch.arange(T - 1)
    starts = rows[(rows + 2 > plen) & (rows + 1 + steps < T)]  # the first answer token is the prefill's
    drafts = torch.zeros(len(starts), steps, dtype=torch.long)
    if not len(starts):
        return starts, drafts
    outs: list[torch.Tensor] = []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        ttt_loss(head, target, feats, steps, image_token_id, outputs=outs)
    for j, h in enumerate(outs[:steps]):
        drafts[:, j] = d2t[head.logits(h[starts]).float().argmax(-1)]
    return starts, drafts


def walk(starts: torch.Tensor, run: torch.Tensor, prompt_len: int, max_new: int = 0) -> list[int]:
    """The accepted runs of the chains a decoding drafts, given the run of a chain from every row in
    ``starts`` (increasing): from the first row (the prefill's token just in), each next chain starts
    one past the last one's accepted drafts (the verify's bonus token); only chains whose first draft
    stands for one of the first ``max_new`` answer tokens (0: all)."""
    at = dict(zip(starts.tolist(), run.tolist()))
    runs, t = [], int(starts[0]) if len(starts) else 0
    while t in at and (max_new <= 0 or t + 2 - prompt_len < max_new):
        runs.append(at[t])
        t += at[t] + 1
    return runs


@torch.no_grad()
def chain_acceptance(head: Eagle3Head, target, cache, steps: int = 3, limit: int = 0, dtype=None, max_new: int = 0) -> dict:
    """Acceptance of ``head``'s chains of ``steps`` drafts over the samples of ``cache``
    (``tools.train.features.FeatureCache``; the first ``limit`` samples, 0: all); the decoding walk
    within the first ``max_new`` answer tokens (0: all)."""
    was = head.training
    head.eval()
    runs, walked, right, seen = [], [], torch.zeros(steps), torch.zeros(steps)
    inside, vocab = 0, head.draft_to_target()
    cfg = getattr(getattr(target, "model", None), "config", None)
    image_token_id = getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)
    n = len(cache) if not limit else min(limit, len(cache))
    try:
        for i in range(n):
            f = cache.feats(i)
            starts, drafts = chain_drafts(head, target, f, steps, dtype, image_token_id)
            if not len(starts):
                continue
            truth = f["ids"][starts[:, None] + 2 + torch.arange(steps)]
            hit = drafts == truth
            inside += int(torch.isin(truth[:, 0], vocab).sum())
            right += hit.float().sum(0)
            seen += len(starts)
            runs.append(hit.long().cumprod(1).sum(1))  # a chain stops at its first miss
            walked += walk(starts, runs[-1], int(f["prompt_len"]), max_new)
    finally:
        head.train(was)
    run = torch.cat(runs) if runs else torch.zeros(0, dtype=torch.long)
    chains = int(run.numel())
    by_pos = [round(float((run > j).float().mean()), 4) if chains else 0.0 for j in range(steps)]
    return {
        "samples": n,
        "chains": chains,
        "mean_accepted_length": round(1.0 + float(run.float().mean()), 4) if chains else 1.0,
        "accepted_by_position": by_pos,
        "top1_per_step": [round(float(r / s), 4) if s else 0.0 for r, s in zip(right, seen)],
        "in_vocabulary": round(inside / chains, 4) if chains else 0.0,  # a first draft's ceiling
        "decoding_chains": len(walked),
        "decoding_mean_accepted_length": round(1.0 + sum(walked) / len(walked), 4) if walked else 1.0,
        "decoding_max_new": max_new,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.train heldout", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--features", required=True, help="a feature cache of held-out samples (tools.train.features)")
    ap.add_argument("--heads", required=True, help="comma-separated head directories (speculators layout)")
    ap.add_argument("--steps", type=int, default=3, help="drafts a chain")
    ap.add_argument("--limit", type=int, default=0, help="the first N samples (0: all)")
    ap.add_argument("--max-new", type=int, default=0, help="the decoding walk within the first N answer tokens (0: all)")
    ap.add_argument("--autocast", choices=("none", "bfloat16"), default="none")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from core import adapters
    from core.paths import resolve_target
    from tools.train.features import fingerprint, open_cache

    cache = open_cache(ap, args.features)
    target = adapters.load(resolve_target(args.target), dtype="float32", kernels="stock")
    if cache.meta["target"] != fingerprint(target):
        ap.error(f"{args.features} was computed with another target")
    heads = [p for p in args.heads.split(",") if p]
    if not heads:
        ap.error("--heads: no head directory given")
    results = {}
    for path in heads:
        try:
            head = Eagle3Head.load(path, dtype=torch.float32)
        except (OSError, ValueError) as e:
            ap.error(f"{path}: {e}")
        if list(head.config.aux_layer_ids) != list(cache.meta["aux_layer_ids"]):
            ap.error(f"{path} reads layers {head.config.aux_layer_ids}; the cache holds {cache.meta['aux_layer_ids']}")
        t0 = time.time()
        dtype = torch.bfloat16 if args.autocast == "bfloat16" else None
        r = chain_acceptance(head, target, cache, args.steps, args.limit, dtype, args.max_new)
        r["seconds"] = round(time.time() - t0, 1)
        results[path] = r
        print(
            f"{path}: mean accepted length {r['mean_accepted_length']:.3f}, accepted by position "
            f"{' '.join(f'{a:.3f}' for a in r['accepted_by_position'])}, top-1 per step "
            f"{' '.join(f'{a:.3f}' for a in r['top1_per_step'])}, in vocabulary {r['in_vocabulary']:.3f} ({r['chains']} chains, {r['samples']} samples, {r['seconds']}s); "
            f"as decoding walks: {r['decoding_mean_accepted_length']:.3f} ({r['decoding_chains']} chains)",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"features": args.features, "steps": args.steps, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
