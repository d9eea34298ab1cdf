"""Train an EAGLE-3 head (core/drafters/eagle3.py) for any target the engine loads.

    python -m tools.train eagle3 --target assets/target --out runs/eagle3 --minutes 30
    python -m tools.train eagle3 --target <hub id> --data prompts.jsonl --out runs/eagle3-x --minutes 600

Data: scenes (the project's generator) or a JSONL of {"image": path|null, "prompt", "answer"?}
(tools.train.msd.SampleSource). Answers are self-distilled: the target's own greedy answer to
each prompt (``--no-distill`` keeps the data's answers), so the head learns what the target
says. The draft vocabulary (``--draft-vocab`` ids) is the most frequent tokens of
``--vocab-samples`` samples' answers (the tokens it drafts; ``--multimodal-share`` of them
with an image whatever the curriculum), EOS always in.

Per sample the frozen target runs once: its residual stream at the three aux layers (taps as
in drafting), its input embeddings (image features merged) and its logits at every position.
Training-time test over ``--ttt`` draft steps: step 0 reads the fused target features; step j
feeds the head's own outputs of step j - 1 (one position further on, rope position t + j), its
queries seeing the real pairs up to t and their own chain (the tree mask of drafting). Loss:
cross-entropy against the target's distribution restricted to the draft vocabulary, on answer
positions, step j weighted 0.8^j. ``--text-frac F``: MSD's two-stage curriculum (text-only
samples for the first F of the budget, then the multimodal share rising linearly to 1).
``--reuse R``: self-distillation costs far more than a head step, so each step takes batch / R
fresh samples and draws the rest from the last ``--replay`` ones (each used about R times);
``--distill-drafter D`` decodes the answers speculatively (the same greedy tokens, faster).
``--init-from-target``: the head's lm_head starts as the target's rows of the draft vocabulary and
its final norm as the target's (same hidden size only).
``--init-head DIR``: start from a trained head (continued training on more data): every weight
copied, its lm_head rows matched by target id to this run's draft vocabulary (rows it lacks as
``--init-from-target`` makes them, else left random); same shapes and aux layers only.
``--features DIR``: train from a feature cache (``python -m tools.train.features``: the target ran
once per sample; aux features, ids and its top-k distribution over the draft vocabulary on disk)
instead of running the target: shuffled epochs over the cached samples, its draft vocabulary and
aux layers; the target is loaded only for its embeddings (and ``--init-from-target``).
``--fresh-from N`` (with ``--features``): the cache's samples from index N on (shards are appended, so
these are the ones added since a head was trained on its first N) come first: the first epoch takes
each of them beside one of the earlier samples, then the rest; later epochs are shuffled as usual.
``--fresh-from head`` reads N from the ``--init-head``'s config (the cache size it was trained on). A
continued run shorter than an epoch then sees every new sample.
``--heldout DIR``: a feature cache of samples it never trains on; the heads' chain acceptance on them
(``tools.train.heldout``: mean accepted length, accepted by draft position) logged at the start, every
``--heldout-every`` seconds and at the end (kept in the head's config): the curve against training tokens.
Checkpointed (``--run-dir``/ckpt.pt) and resumable (``--resume``); progress in
``--run-dir``/log.txt. The head is saved in the speculators layout (vLLM loads it;
``python -m core export`` rewrites it).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter, deque
from pathlib import Path

import torch

from core import adapters
from core.drafters.eagle3 import AuxTaps, Eagle3Head, default_aux_layers, new_head
from tools.train.common import log, lr_at
from tools.train.msd import SampleSource, curriculum


# ---------------------------------------------------------------- data
def distill(target, sample: dict, max_new_tokens: int, drafter=None) -> dict:
    """The sample with the target's own greedy answer (decoded speculatively when ``drafter`` is
    given: the same tokens, lossless at T=0, in less time)."""
    from core.drafters import DraftSpec
    from core.engine import generate

    spec = DraftSpec("chain", gamma=6)
    tr = generate(target, sample["prompt"], sample["image"], drafter, spec, max_new_tokens=max_new_tokens, detail=False)
    return dict(sample, answer=tr.text.strip())


def sample_ids(target, sample: dict):
    """(encoded prompt, full ids (prompt + answer + eos))."""
    enc = target.encode(sample["prompt"], sample["image"])
    ans = target.tokenizer(sample["answer"], add_special_tokens=False)["input_ids"]
    eos = target.tokenizer.eos_token_id
    ids = torch.cat([enc.input_ids, torch.tensor([ans + ([eos] if eos is not None else [])])], dim=1)
    return enc, ids


def draft_vocabulary(target, samples: list[dict], size: int) -> tuple[list[int], dict]:
    """The ``size`` most frequent ANSWER token ids of the samples, the tokens a head drafts (EOS
    first, then by count, then by id), padded with the lowest unused ids when the data holds fewer;
    and the counts. (Counting the prompts too held 95.6% of the coder head's held-out answer tokens
    in 8192 ids, the answers alone 96.2%: thirty-fifth session.)"""
    counts: Counter = Counter()
    for s in samples:
        enc, ids = sample_ids(target, s)
        counts.update(ids[0, enc.length :].tolist())
    return ranked_vocabulary(counts, size, target.eos_ids, target.vocab_size), {str(k): v for k, v in counts.items()}


def ranked_vocabulary(counts: Counter, size: int, eos_ids, vocab_size: int) -> list[int]:
    """``size`` ids: the first EOS id, then the counted ids by count (then id), padded with the lowest
    unused ids when fewer were counted."""
    size = min(size, vocab_size)
    order = [t for t in sorted(eos_ids) if t < vocab_size][:1]
    order += [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if t not in order]
    order = order[:size]
    used = set(order)
    return order + [t for t in range(vocab_size) if t not in used][: size - len(order)]


@torch.no_grad()
def target_features(target, taps: AuxTaps, sample: dict, all_logits: bool = True, max_tokens: int = 0) -> dict:
    """What one training sample needs from the frozen target (clones: outside inference mode).

    ``all_logits=False`` (the feature cache, tools/train/features.py): no logits over the whole
    vocabulary at every position; instead ``hidden`` (the target's last hidden state, after its
    final norm, every position) and ``last_logits`` (the last position's). ``max_tokens``: keep
    the first this many ids of prompt + answer (the prefill is causal: the same features for them)."""
    enc, ids = sample_ids(target, sample)
    if max_tokens and ids.shape[1] > max_tokens:
        ids = ids[:, :max_tokens]
    full = adapters.Encoded(ids, enc.extra, enc.has_image)
    sess, logits, hidden = target.prefill(full, want_hidden=True, all_logits=all_logits)
    aux = taps.lookup(hidden)
    taps.clear()
    out = {
        "ids": ids[0].clone(),
        "aux": aux.float().clone(),
        "logits": logits.float().clone() if all_logits else None,
        "embeds": None if sess.embeds is None else sess.embeds[0].float().clone(),
        "prompt_len": enc.length,
    }
    if not all_logits:
        out["hidden"], out["last_logits"] = hidden.float().clone(), logits.float().clone()
    return out


# ---------------------------------------------------------------- loss
def ttt_loss(head: Eagle3Head, target, feats: dict, steps: int, image_token_id=None, decay: float = 0.8, outputs: list | None = None):
    """Training-time-test loss of one sample over ``steps`` draft steps. Returns (loss, top-1
    agreement with the target per step). ``outputs``: gets each step's head outputs (n, H).

    The target's distribution comes dense (``feats["logits"]``, (T, target vocabulary): softmax
    over the draft vocabulary's columns) or sparse, as the feature cache keeps it
    (``feats["logits"]`` None; ``topk_ids`` (T - prompt_len, k) draft ids and ``topk_p`` their
    probabilities for rows prompt_len - 1 .. T - 2, the rows that predict answer tokens,
    renormalised here): the same loss when k covers the draft vocabulary."""
    ids, aux, tl, plen = feats["ids"], feats["aux"], feats.get("logits"), feats["prompt_len"]
    T = ids.shape[0]
    n = T - 1  # pairs (g_t, x_{t+1}), t = 0 .. T-2
    emb_mod = head.embed_tokens if head.embed_tokens is not None else target.model.get_input_embeddings()
    sparse = tl is None
    with torch.no_grad():
        if sparse:
            tk_ids, tk_p = feats["topk_ids"].long(), feats["topk_p"].float()
        else:
            p_all = torch.softmax(tl[:, head.draft_to_target()], -1)  # target's distribution over the draft vocabulary
    g = head.features(aux[:-1])
    dt = g.dtype
    big = torch.finfo(dt).min
    causal = torch.zeros(n, n, dtype=dt).masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), big)
    diag = torch.full((n, n), big, dtype=dt).fill_diagonal_(0.0)
    kv = [None, None]
    h = g
    total, accs = 0.0, []
    for j in range(steps):
        tok_idx = torch.arange(n) + 1 + j  # position t reads x_{t+1+j}
        valid = tok_idx + 1 < T  # its target x_{t+2+j} exists
        valid &= tok_idx + 1 >= plen  # ... and is an answer token
        toks = ids[tok_idx.clamp(max=T - 1)]
        with torch.no_grad():
            e = emb_mod(toks).to(dt)
        vis = None
        if feats["embeds"] is not None and image_token_id is not None:
            vis = (toks == image_token_id) & (tok_idx < T)
        # step 0: the fused target features; step j: the head's own outputs of step j - 1 (row t)
        x = head.fuse(e, h, None if vis is None else feats["embeds"][tok_idx.clamp(max=T - 1)], vis)
        mask = torch.cat([causal] + [diag] * j, dim=1).view(1, 1, n, n * (j + 1))
        h = head.step(x.unsqueeze(0), (torch.arange(n) + j).view(1, -1), mask, kv)[0]
        if outputs is not None:
            outputs.append(h)
        if not bool(valid.any()):
            break
        logq = torch.log_softmax(head.logits(h[valid]).float(), -1)
        rows = tok_idx[valid]  # target row t+1+j predicts x_{t+2+j}
        if sparse:
            idx, p = tk_ids[rows - (plen - 1)], tk_p[rows - (plen - 1)]
            p = p / p.sum(-1, keepdim=True).clamp_min(1e-9)
            total = total + (decay**j) * -(p * logq.gather(-1, idx)).sum(-1).mean()
            best = idx.gather(-1, p.argmax(-1, keepdim=True))[:, 0]
        else:
            p = p_all[rows]
            p = p / p.sum(-1, keepdim=True).clamp_min(1e-9)
            total = total + (decay**j) * -(p * logq).sum(-1).mean()
            best = p.argmax(-1)
        accs.append(float((logq.argmax(-1) == best).float().mean()))
    return total, accs


# ---------------------------------------------------------------- init
@torch.no_grad()
def init_from_target(head: Eagle3Head, target) -> None:
    """Start the head from the target's output layer: its ``lm_head`` rows are the target's rows of
    the draft vocabulary (draft id j: target id ``draft_to_target()[j]``) and its final ``norm``
    the target's, so from the start it predicts the target's next token from a hidden state like
    the target's last one. Needs the head's hidden size to equal the target's (ValueError)."""
    lm = target.model.get_output_embeddings().weight
    norm = getattr(target.text_module(), "norm", None)
    if head.config.hidden_size != lm.shape[1]:
        raise ValueError(
            f"--init-from-target: the head's hidden size {head.config.hidden_size} differs from the target's {lm.shape[1]} "
            "(drop --hidden-size or the init)"
        )
    if norm is None or tuple(norm.weight.shape) != tuple(head.norm.weight.shape):
        raise ValueError("--init-from-target: the target has no final norm of the head's width")
    head.lm_head.weight.copy_(lm[head.draft_to_target().to(lm.device)].to(head.lm_head.weight))
    head.norm.weight.copy_(norm.weight.to(head.norm.weight))


@torch.no_grad()
def init_from_head(head: Eagle3Head, old: Eagle3Head) -> int:
    """Continue from ``old``: every weight but lm_head copied (same shapes, same aux layers, else
    ValueError), lm_head rows copied where ``old`` drafts the same target id. Returns how many of
    ``head``'s draft ids ``old`` knew."""
    if list(old.config.aux_layer_ids or []) != list(head.config.aux_layer_ids or []):
        raise ValueError(f"--init-head reads layers {old.config.aux_layer_ids}, this run {head.config.aux_layer_ids}")
    mine, theirs = head.state_dict(), old.state_dict()
    for name, t in mine.items():
        if name.startswith("lm_head.") or name in ("d2t", "t2d"):
            continue
        if name not in theirs or tuple(theirs[name].shape) != tuple(t.shape):
            got = tuple(theirs[name].shape) if name in theirs else "missing"
            raise ValueError(f"--init-head: {name} is {got} there, {tuple(t.shape)} here (same sizes only)")
        t.copy_(theirs[name].to(t))
    where = {int(tid): j for j, tid in enumerate(old.draft_to_target().tolist())}
    new_ids = head.draft_to_target().tolist()
    pairs = [(i, where[int(tid)]) for i, tid in enumerate(new_ids) if int(tid) in where]
    if pairs:
        dst, src = (torch.tensor(x) for x in zip(*pairs))
        head.lm_head.weight[dst] = old.lm_head.weight[src].to(head.lm_head.weight)
    return len(pairs)


# ---------------------------------------------------------------- main
def _source(data: str, seed: int, style: str) -> SampleSource:
    """MSD's sample source; JSONL rows may omit the answer (it is distilled)."""
    src = SampleSource(data, seed=seed, style=style)
    for r in src.rows or []:
        r.setdefault("answer", "")
    return src


def fresh_first_order(n: int, fresh_from: int, rng: random.Random) -> list[int]:
    """An epoch's order over ``n`` cached samples, those from ``fresh_from`` on first: each beside one of
    the earlier ones (shuffled together), then the earlier ones left (shuffled). Every index once."""
    new, old = list(range(fresh_from, n)), list(range(min(fresh_from, n)))
    rng.shuffle(new)
    rng.shuffle(old)
    m = min(len(new), len(old))
    first = new + old[:m]
    rng.shuffle(first)
    return first + old[m:]


def fresh_from_arg(text: str) -> str | int:
    """``--fresh-from``: 'head' or a sample index (>= 0); anything else is argparse's one-line error."""
    if text == "head":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a sample index or 'head'") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text}: a sample index (>= 0)")
    return n


def parse_aux_layers(ap: argparse.ArgumentParser, text: str | None) -> list[int] | None:
    """``--aux-layers``: three comma-separated layer ids (None when not given); bad input ends
    through ``ap.error`` with one line."""
    if not text:
        return None
    try:
        ids = [int(x) for x in text.split(",")]
    except ValueError:
        ap.error(f"--aux-layers takes three comma-separated integers, got {text!r}")
    if len(ids) != 3:
        ap.error("--aux-layers takes three layer ids")
    return ids


def main(argv=None):
    from tools.scenes.tasks import ANSWER_STYLES

    ap = argparse.ArgumentParser(prog="python -m tools.train eagle3", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="assets/target")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default="scenes", help="'scenes' or a JSONL of {image, prompt, answer?}")
    ap.add_argument(
        "--features",
        default=None,
        help="train from this feature cache (python -m tools.train.features) instead of running the target: "
        "epochs over its samples, its draft vocabulary and aux layers (several, comma-separated: read as one)",
    )
    ap.add_argument("--no-distill", action="store_true", help="train on the data's answers, not the target's")
    ap.add_argument("--answer-tokens", type=int, default=64, help="length of the self-distilled answers")
    ap.add_argument(
        "--distill-drafter",
        default=None,
        help="decode the self-distilled answers speculatively with this drafter (a shipped name such as "
        "msd, ngram, a directory): the same greedy tokens, faster",
    )
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (smoke test)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument(
        "--reuse",
        type=int,
        default=1,
        help="use each distilled sample about this many times: per step batch / reuse fresh samples, the "
        "rest drawn from the last --replay ones (self-distillation costs far more than a head step)",
    )
    ap.add_argument("--replay", type=int, default=128, help="samples kept for --reuse")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ttt", type=int, default=3, help="training-time-test draft steps")
    ap.add_argument("--draft-vocab", type=int, default=32000)
    ap.add_argument("--vocab-samples", type=int, default=256)
    ap.add_argument("--hidden-size", type=int, default=None, help="the head's width (default: the target's)")
    ap.add_argument(
        "--intermediate-size",
        type=int,
        default=None,
        help="the width of the head's MLP (default: the target's at the target's hidden size, else 4x the head's); smaller: "
        "a smaller, faster-trained head",
    )
    ap.add_argument(
        "--autocast",
        default="none",
        choices=("none", "bfloat16"),
        help="train under torch.autocast in this dtype (float32 weights and optimizer; bfloat16 products: several times "
        "faster on a CPU with AMX or AVX512-BF16)",
    )
    ap.add_argument("--aux-layers", default=None, help="three comma-separated layer ids (default [2, L//2, L-3])")
    ap.add_argument("--norm-before-residual", action="store_true")
    ap.add_argument(
        "--init-head", default=None, help="start from this trained head's weights (continued training on more data; same sizes)"
    )
    ap.add_argument(
        "--fresh-from",
        default=None,
        type=fresh_from_arg,
        help="with --features: the first epoch takes the cache's samples from this index on first, each beside an "
        "earlier one ('head': the --init-head's cache size)",
    )
    ap.add_argument(
        "--init-from-target",
        action="store_true",
        help="start lm_head from the target's rows of the draft vocabulary and norm from the target's final norm "
        "(the head's hidden size must be the target's)",
    )
    ap.add_argument("--multimodal-share", type=float, default=0.5, help="share of samples with an image (no curriculum: --text-frac < 0)")
    ap.add_argument(
        "--text-frac",
        type=float,
        default=-1.0,
        help="MSD's two-stage curriculum: text-only for this share of the budget, then the multimodal "
        "share rising linearly to 1 (e.g. 0.25); negative (default): a fixed --multimodal-share",
    )
    ap.add_argument("--answer-style", default="direct", choices=ANSWER_STYLES)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--heldout", default=None, help="a feature cache of held-out samples: their chain acceptance logged as training goes")
    ap.add_argument("--heldout-every", type=float, default=600.0, help="seconds between held-out evaluations")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--checkpoint-every", type=float, default=300.0, help="seconds between checkpoints")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 1 <= args.ttt <= 8:
        ap.error("--ttt must be in [1, 8]")
    if args.intermediate_size is not None and args.intermediate_size < 1:
        ap.error(f"--intermediate-size must be at least 1, got {args.intermediate_size}")
    aux_ids = parse_aux_layers(ap, args.aux_layers)
    if args.fresh_from is not None and not args.features:
        ap.error("--fresh-from: only with --features")
    cache = None
    if args.features:
        from tools.train.features import fingerprint, open_cache

        bad = [
            o
            for o, on in (("--reuse", args.reuse > 1), ("--text-frac", args.text_frac >= 0), ("--distill-drafter", args.distill_drafter))
            if on
        ]
        if bad:
            ap.error(f"{', '.join(bad)}: not with --features (the cache holds the samples; each is seen once per epoch)")
        cache = open_cache(ap, args.features)
        if aux_ids and aux_ids != cache.meta["aux_layer_ids"]:
            ap.error(f"--aux-layers {aux_ids}: the cache holds layers {cache.meta['aux_layer_ids']}")
        aux_ids = cache.meta["aux_layer_ids"]
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir or f"runs/{Path(args.out).name}")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "ckpt.pt"

    from core.paths import resolve_target

    target = adapters.load(resolve_target(args.target), dtype="float32", kernels="stock")
    for p in target.model.parameters():
        p.requires_grad_(False)
    if cache is not None and cache.meta["target"] != fingerprint(target):
        ap.error(f"{args.features} was computed with another target ({cache.meta['target']} vs {fingerprint(target)})")
    n_layers = len(target.text_module().layers)
    aux_ids = aux_ids or default_aux_layers(n_layers)
    held = None
    if args.heldout:
        from tools.train.features import fingerprint, open_cache

        held = open_cache(ap, args.heldout, "--heldout")
        if held.meta["target"] != fingerprint(target) or held.meta["aux_layer_ids"] != aux_ids:
            ap.error(f"--heldout {args.heldout}: computed with another target or other aux layers")
    th = target.model.get_input_embeddings().embedding_dim
    if args.init_from_target and args.hidden_size and args.hidden_size != th:
        ap.error(f"--init-from-target needs the head's hidden size to be the target's ({th}), got --hidden-size {args.hidden_size}")
    cfg = target.model.config
    image_token_id = getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)
    src = _source(args.data, args.seed, args.answer_style)
    dd = None
    if args.distill_drafter and not args.no_distill:
        from core.drafters import make_drafter
        from core.paths import SHIPPED_DRAFTERS

        dd = make_drafter(str(SHIPPED_DRAFTERS.get(args.distill_drafter, args.distill_drafter)), target)

    def p_multimodal(frac: float) -> float:
        return args.multimodal_share if args.text_frac < 0 else curriculum(frac, args.text_frac)

    def next_sample(frac: float = 0.0):
        s = src.get(p_multimodal(frac))
        return s if args.no_distill or not s.get("prompt") else distill(target, s, args.answer_tokens, dd)

    state = torch.load(ckpt, map_location="cpu", weights_only=False) if args.resume and ckpt.exists() else None
    if state is not None:
        vocab = state["vocab"]
        if cache is not None and list(vocab) != list(cache.vocab):
            ap.error(f"the checkpoint's draft vocabulary is not {args.features}'s")
        log(f"resuming from step {state['step']} ({state['elapsed']:.0f}s)", run_dir)
    elif cache is not None:
        vocab = list(cache.vocab)
        (run_dir / "vocab.json").write_text((cache.dir / "vocab.json").read_text())
        log(
            f"feature cache {args.features}: {len(cache)} samples, {cache.tokens()} tokens, aux layers {aux_ids}, "
            f"draft vocabulary {len(vocab)} ids, top-{cache.meta['top_k']}"
            + (f"; not loaded: {', '.join(cache.bad)}" if cache.bad else ""),
            run_dir,
        )
    else:
        t0 = time.time()
        # the vocabulary sees both kinds of samples, whatever the curriculum
        vocab_src = _source(args.data, args.seed + 7_000_000, args.answer_style)
        vocab_samples = [vocab_src.get(args.multimodal_share) for _ in range(args.vocab_samples)]
        if not args.no_distill and args.draft_vocab < target.vocab_size:  # else every id is in: no need
            vocab_samples = [distill(target, s, args.answer_tokens, dd) if s.get("prompt") else s for s in vocab_samples]
        vocab, counts = draft_vocabulary(target, vocab_samples, args.draft_vocab)
        (run_dir / "vocab.json").write_text(json.dumps({"draft_to_target": vocab, "counts": counts}))
        log(
            f"draft vocabulary: {len(vocab)} ids from {len(counts)} distinct tokens of {args.vocab_samples} samples "
            f"({time.time() - t0:.0f}s)",
            run_dir,
        )
    head = new_head(
        target,
        hidden_size=args.hidden_size,
        draft_vocab=vocab,
        aux_layer_ids=aux_ids,
        norm_before_residual=args.norm_before_residual,
        intermediate_size=args.intermediate_size,
        seed=args.seed,
    )
    if args.init_from_target and state is None:
        init_from_target(head, target)
        log("lm_head and norm initialised from the target's", run_dir)
    lineage = state.get("continued_from") if state is not None else None  # what --init-head started from
    if args.init_head and state is None:
        try:
            old = Eagle3Head.load(args.init_head, dtype=torch.float32)
            known = init_from_head(head, old)
        except (OSError, ValueError) as e:
            ap.error(str(e))
        was = old.config.meta.get("specscope", {})
        keep = ("steps", "answer_tokens_seen", "samples_distilled", "minutes", "continued_from")
        lineage = {"path": str(args.init_head), **{k: was[k] for k in keep if k in was}}
        log(f"weights from {args.init_head} ({known} of {len(vocab)} draft ids' lm_head rows)", run_dir)
    fresh_from = args.fresh_from
    if fresh_from == "head":
        if not lineage or "samples_distilled" not in lineage:
            ap.error("--fresh-from head: needs an --init-head whose config records the cache size it was trained on")
        fresh_from = int(lineage["samples_distilled"])
    if fresh_from is not None:
        log(f"first epoch: the {max(0, len(cache) - fresh_from)} samples from index {fresh_from} on first", run_dir)
    head.train()
    taps = AuxTaps(target, head.config.aux_layer_ids)
    params = [p for n_, p in head.named_parameters() if not n_.startswith("embed_tokens")]
    if head.embed_tokens is not None:
        head.embed_tokens.weight.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step, elapsed, tokens = 0, 0.0, 0
    if state is not None:
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        step, elapsed, tokens = state["step"], state["elapsed"], state.get("tokens", 0)
        src = _source(args.data, args.seed + step, args.answer_style)

    def save_ckpt():
        torch.save(
            {
                "head": head.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "vocab": vocab,
                "elapsed": time.time() - t_start,
                "tokens": tokens,
                "fresh": fresh,
                "epoch": epoch,
                "pos": pos,
                "n_cached": len(order),
                "samples": samples,
                "continued_from": lineage,
            },
            ckpt,
        )

    total = args.minutes * 60
    t_start = time.time() - elapsed
    last_ck = time.time()
    last_held, held_result = time.time(), None

    def evaluate_heldout():
        from tools.train.heldout import chain_acceptance

        r = chain_acceptance(head, target, held, args.ttt, dtype=torch.bfloat16 if args.autocast == "bfloat16" else None)
        log(
            f"heldout step {step} tokens {tokens} mean accepted length {r['mean_accepted_length']:.4f} "
            f"by position {' '.join(f'{a:.3f}' for a in r['accepted_by_position'])} "
            f"top1/step {' '.join(f'{a:.3f}' for a in r['top1_per_step'])} ({r['chains']} chains); "
            f"as decoding walks {r['decoding_mean_accepted_length']:.4f} ({r['decoding_chains']} chains)",
            run_dir,
        )
        return r

    if held is not None and state is None:
        held_result = evaluate_heldout()  # where the run starts from
    hist: list[float] = []
    pool: deque = deque(maxlen=max(1, args.replay))  # --reuse: recent samples' target features
    rng = random.Random(args.seed + step)
    fresh = 0 if state is None else state.get("fresh", 0)  # distilled samples drawn
    # --features: shuffled epochs over the cached samples (epoch e's order: a permutation seeded by
    # --seed and e); resumed at the same place unless the cache has grown meanwhile
    epoch, pos, samples, order = 0, 0, 0, []
    if state is not None:
        epoch, pos, samples = state.get("epoch", 0), state.get("pos", 0), state.get("samples", 0)

    def epoch_order(e: int) -> list[int]:
        if e == 0 and fresh_from is not None:
            return fresh_first_order(len(cache), fresh_from, random.Random(f"{args.seed}:{e}"))
        idx = list(range(len(cache)))
        random.Random(f"{args.seed}:{e}").shuffle(idx)
        return idx

    if cache is not None:
        if state is not None and state.get("n_cached") not in (None, len(cache)):
            log(f"the cache holds {len(cache)} samples (was {state['n_cached']}): a new epoch starts over all of them", run_dir)
            epoch, pos = epoch + (pos > 0), 0
        order = epoch_order(epoch)

    def next_cached() -> dict:
        nonlocal epoch, pos, order
        if pos >= len(order):
            epoch, pos = epoch + 1, 0
            order = epoch_order(epoch)
        pos += 1
        return cache.feats(order[pos - 1])

    while True:
        elapsed = time.time() - t_start
        if elapsed >= total or (args.steps and step >= args.steps):
            break
        n_fresh = args.batch if args.reuse <= 1 or len(pool) < args.batch else max(1, round(args.batch / args.reuse))
        if cache is not None:
            batch, n_fresh = [next_cached() for _ in range(args.batch)], 0
        else:
            batch = [target_features(target, taps, next_sample(elapsed / total)) for _ in range(n_fresh)]
        if args.reuse > 1:
            batch += [pool[rng.randrange(len(pool))] for _ in range(args.batch - n_fresh)]
            pool.extend(batch[:n_fresh])
        lr = lr_at(step, elapsed / total, args.lr, warmup=20)
        for gr in opt.param_groups:
            gr["lr"] = lr
        losses, accs = [], []
        for f in batch:
            with torch.autocast(target.device.type, dtype=torch.bfloat16, enabled=args.autocast == "bfloat16"):
                loss, acc = ttt_loss(head, target, f, args.ttt, image_token_id)
            if torch.is_tensor(loss):
                losses.append(loss)
                accs.append(acc)
        if not losses:
            continue
        loss = torch.stack(losses).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        fresh += n_fresh
        samples += len(batch)
        tokens += sum(int(f["ids"].shape[0]) - f["prompt_len"] for f in batch)  # answer tokens (+ eos) seen
        depth_acc = [sum(a[j] for a in accs if len(a) > j) / max(1, sum(1 for a in accs if len(a) > j)) for j in range(args.ttt)]
        hist.append(depth_acc[0])
        if step % 10 == 0 or args.steps:
            where = (
                f"epoch {epoch + pos / len(order):.2f} samples {samples} tokens {tokens}"
                if cache is not None
                else f"p_mm {p_multimodal(elapsed / total):.2f} tokens {tokens} fresh {fresh}"
            )
            log(
                f"step {step} loss {loss.item():.4f} top1/depth {' '.join(f'{a:.3f}' for a in depth_acc)} "
                f"{where} lr {lr:.2e} elapsed {elapsed:.0f}s of {total:.0f}s",
                run_dir,
            )
        if held is not None and time.time() - last_held > args.heldout_every:
            held_result = evaluate_heldout()
            last_held = time.time()
        if time.time() - last_ck > args.checkpoint_every:
            save_ckpt()
            last_ck = time.time()
    save_ckpt()
    taps.remove()
    if held is not None:
        held_result = evaluate_heldout()
    head.config.meta["specscope"] = {
        "target": str(args.target),
        "steps": step,
        "answer_tokens_seen": tokens,
        "samples_distilled": fresh if cache is None else len(cache),
        "ttt": args.ttt,
        "minutes": round((time.time() - t_start) / 60, 2),
        "data": args.data if cache is None else args.features,
        "distilled": not args.no_distill,
        "top1_last100": round(sum(hist[-100:]) / max(1, len(hist[-100:])), 4),
    }
    if cache is not None:
        head.config.meta["specscope"]["epochs"] = round(epoch + pos / len(order), 3)
    if held_result is not None:
        head.config.meta["specscope"]["heldout"] = {"features": str(args.heldout), **held_result}
    if lineage:  # the counts above are this run's; the head it continued has its own
        head.config.meta["specscope"]["continued_from"] = lineage
    head.config.meta["speculative_tokens"] = args.ttt
    head.eval().save(args.out)
    log(f"saved {args.out} after {step} steps", run_dir)


if __name__ == "__main__":
    main()
