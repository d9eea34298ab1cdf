"""A feature cache's training targets over another draft vocabulary, without its prefill again.

    python -m tools.train.revocab --target T --features runs/e3_real/feats --out runs/e3_real/feats_v2 \\
        --draft-vocab 8192
    python -m tools.train eagle3 --target T --features runs/e3_real/feats_v2 --init-head H --init-from-target ...

The draft vocabulary of a feature cache (``tools.train.features``) is fixed before its first sample,
from the first ``--vocab-samples`` rows (their prompts counted too, before the thirty-fifth session). A cache that has grown since
holds a better one: the most frequent ANSWER tokens of all its samples, the tokens a head drafts.
Its top-k targets are over the old vocabulary, though, and computing the cache again costs a whole
prefill per sample (hours for millions of tokens on a CPU).

The cache already holds the residual stream entering its last aux layer (``aux``'s last block:
layer ``L - 3`` of ``L`` by default), so this runs only the target's layers from there on, its final
norm and its output rows of the new vocabulary: a few layers of the prefill (about an eighth for
EAGLE-3's default layers). It writes a LABEL cache: ``meta.json`` (the base cache's settings, the new
``draft_vocab`` and ``labels_of``: the base cache's directory), ``vocab.json`` and one
``labels_NNNNN.pt`` per base shard ({"format", "keys", "labels": [{"topk_ids", "topk_p"}]}, in the
base shard's order). ``FeatureCache`` reads it as the base cache with these targets (only the base
shards relabelled so far), without copying its features.

Before anything is written the tail is checked against the cache itself: on its first samples, the
tail's distribution over the OLD vocabulary must give the recorded top-k (the same first token on
nearly every row, probabilities within rounding); a target whose text model does not take the
residual stream as given (embedding scaling, multimodal positions) fails here with a message.
Samples with images are refused (their rope positions are the multimodal ones). Resumable: label
shards already written are kept (``--redo`` computes them again); Ctrl-C / SIGTERM stop between
shards.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import torch

from tools.train.features import FORMAT, _load_shard, draft_logits, fingerprint, shard_index, shard_paths, sparse_targets

LABELS = "labels_{:05d}.pt"


# ---------------------------------------------------------------- the vocabulary
def answer_counts(samples: list[dict]) -> Counter:
    """How often each ANSWER token id (``ids`` past ``prompt_len``) occurs in cached samples."""
    counts: Counter = Counter()
    for s in samples:
        counts.update(s["ids"][int(s["prompt_len"]) :].tolist())
    return counts


def answer_vocabulary(samples: list[dict], size: int, eos_ids: list[int], vocab_size: int) -> tuple[list[int], dict]:
    """The ``size`` most frequent answer token ids of cached samples, ranked as the trainer's draft
    vocabulary is (EOS first, padded when fewer); and the counts."""
    from tools.train.eagle3 import ranked_vocabulary

    counts = answer_counts(samples)
    return ranked_vocabulary(counts, size, eos_ids, vocab_size), {str(k): v for k, v in counts.items()}


# ---------------------------------------------------------------- the tail of the target
class Tail:
    """The target from the residual stream entering layer ``start`` to its final hidden state: its
    text model with only layers ``start..`` in place (rope, causal mask and final norm its own)."""

    def __init__(self, target, start: int):
        self.text = target.text_module()
        self.start = start
        self.dtype = target.dtype

    @torch.inference_mode()
    def hidden(self, resid: torch.Tensor) -> torch.Tensor:
        """(T, H) residual entering layer ``start`` -> (T, H) final hidden state (after the norm)."""
        layers = self.text.layers
        self.text.layers = torch.nn.ModuleList(list(layers)[self.start :])
        try:
            out = self.text(inputs_embeds=resid[None].to(self.dtype), use_cache=False)
        finally:
            self.text.layers = layers
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return h[0]


def answer_logits(tail: Tail, sample: dict, lm_w, lm_b) -> torch.Tensor:
    """The target's logits over a vocabulary (``lm_w``: its output rows) at the rows that predict
    answer tokens, from the sample's cached residual at the tail's layer (``aux``'s last block)."""
    plen, T = int(sample["prompt_len"]), sample["ids"].shape[0]
    hidden = tail.hidden(sample["aux"][:, -lm_w.shape[1] :].float())
    return draft_logits(lm_w, lm_b, hidden[plen - 1 : T - 1])


def labels_for(tail: Tail, sample: dict, lm_w, lm_b, k: int) -> dict:
    """The top ``k`` of that distribution, as the features command records it."""
    tk_ids, tk_p = sparse_targets(answer_logits(tail, sample, lm_w, lm_b), k)
    return {"topk_ids": tk_ids, "topk_p": tk_p.half()}


def check_tail(tail: Tail, samples: list[dict], lm_w, lm_b, min_top1: float = 0.98, max_dp: float = 0.05) -> dict:
    """The tail against the cache's own record (``lm_w``: the OLD vocabulary's rows): the recorded
    first draft id on at least ``min_top1`` of the rows, the recorded probabilities within ``max_dp``.
    RuntimeError otherwise."""
    agree = rows = 0
    worst = 0.0
    for s in samples:
        p = torch.softmax(answer_logits(tail, s, lm_w, lm_b), -1)
        ids, rec = s["topk_ids"].long(), s["topk_p"].float()
        agree += int((p.argmax(-1) == ids[:, 0]).sum())
        rows += ids.shape[0]
        worst = max(worst, float((p.gather(1, ids) - rec).abs().max()))
    top1 = agree / max(rows, 1)
    if top1 < min_top1 or worst > max_dp:
        raise RuntimeError(
            f"the target's layers from the last aux layer on do not give the cache's recorded distribution (first draft "
            f"equal on {top1:.3f} of {rows} rows, probabilities off by up to {worst:.3f}): this target's text model does not "
            "take the residual stream as given; compute the cache again with python -m tools.train.features --vocab FILE"
        )
    return {"rows": rows, "top1_equal": round(top1, 4), "max_abs_dp": round(worst, 4)}


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.revocab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="assets/target")
    ap.add_argument("--features", required=True, help="the base feature cache (one directory)")
    ap.add_argument("--out", required=True, help="the label cache's directory")
    ap.add_argument("--draft-vocab", type=int, default=0, help="new vocabulary size: the base cache's most frequent answer tokens")
    ap.add_argument("--vocab", default=None, help="a vocab.json ({'draft_to_target': [...]}) instead (for example another label cache's)")
    ap.add_argument("--check-samples", type=int, default=4, help="samples the tail is checked on against the cache's record")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--redo", action="store_true", help="compute label shards already written again")
    args = ap.parse_args(argv)
    if (args.draft_vocab > 0) == bool(args.vocab):
        ap.error("give one of --draft-vocab N (N >= 1) or --vocab FILE")
    if "," in args.features:
        ap.error("--features: one base cache (relabel each of several caches on its own, with the same --vocab)")
    base = Path(args.features)
    if not (base / "meta.json").exists() or not (base / "vocab.json").exists():
        ap.error(f"{base}: no feature cache (meta.json, vocab.json; python -m tools.train.features writes them)")
    meta = json.loads((base / "meta.json").read_text())
    if "labels_of" in meta:
        ap.error(f"{base} is itself a label cache: relabel its base, {meta['labels_of']}")
    old_vocab = json.loads((base / "vocab.json").read_text())["draft_to_target"]
    out = Path(args.out)
    if out.resolve() == base.resolve():
        ap.error("--out must be another directory than --features")
    if args.threads:
        torch.set_num_threads(args.threads)

    from core import adapters
    from core.paths import resolve_target

    target = adapters.load(resolve_target(args.target), dtype=meta.get("dtype", "float32"), kernels="stock")
    if meta["target"] != fingerprint(target):
        ap.error(f"{base} was computed with another target ({meta['target']} vs {fingerprint(target)})")
    paths = shard_paths(base)
    shards = []
    for p in paths:
        try:
            shards.append((p, _load_shard(p)["samples"]))
        except Exception as e:
            print(f"{os.path.basename(p)} does not load ({type(e).__name__}): left out", flush=True)
    samples = [s for _, ss in shards for s in ss]
    if not samples:
        ap.error(f"{base}: no samples")
    if any(s.get("image_rows") is not None for s in samples):
        ap.error(f"{base} holds samples with images: their positions are the multimodal ones, compute it again with tools.train.features")

    # ---- the vocabulary
    out.mkdir(parents=True, exist_ok=True)
    vocab_path = out / "vocab.json"
    from tools.train.eagle3 import ranked_vocabulary

    answer = answer_counts(samples)
    if args.vocab:
        try:
            vocab = [int(t) for t in json.loads(Path(args.vocab).read_text())["draft_to_target"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            ap.error(f"--vocab {args.vocab}: not a vocab.json with a 'draft_to_target' list of ids ({type(e).__name__}: {e})")
        counts: dict = {}
    else:
        vocab = ranked_vocabulary(answer, args.draft_vocab, list(target.eos_ids), target.vocab_size)
        counts = {str(k): v for k, v in answer.items()}
    if len(set(vocab)) != len(vocab) or not all(0 <= t < target.vocab_size for t in vocab):
        ap.error(f"the draft vocabulary must be distinct ids of the target's vocabulary (0..{target.vocab_size - 1})")
    if vocab_path.exists() and json.loads(vocab_path.read_text())["draft_to_target"] != vocab:
        ap.error(f"{out} holds labels over another draft vocabulary: another --out (or remove it)")
    total = sum(answer.values())

    def held(v) -> float:
        v = set(v)
        return sum(c for t, c in answer.items() if t in v) / max(total, 1)

    print(
        f"{base}: {len(samples)} samples, {total} answer tokens; answer tokens in the draft vocabulary: "
        f"old ({len(old_vocab)} ids) {held(old_vocab):.4f}, new ({len(vocab)} ids) {held(vocab):.4f}",
        flush=True,
    )

    # ---- the tail, checked against the cache before anything is written
    start = max(meta["aux_layer_ids"])
    tail = Tail(target, start)
    lm = target.model.get_output_embeddings()

    def rows_of(v):
        t = torch.tensor(v)
        with torch.no_grad():
            return lm.weight[t].float().clone(), (lm.bias[t].float().clone() if getattr(lm, "bias", None) is not None else None)

    t0 = time.time()
    try:
        check = check_tail(tail, samples[: max(1, args.check_samples)], *rows_of(old_vocab))
    except RuntimeError as e:
        ap.error(str(e))
    print(
        f"the tail (layers {start}.. of {meta['target']['layers']}) gives the cache's record: {check} ({time.time() - t0:.1f}s)", flush=True
    )
    vocab_path.write_text(json.dumps({"draft_to_target": vocab, "counts": counts}))
    new_meta = {**meta, "draft_vocab": len(vocab), "labels_of": str(base.resolve()), "tail_check": check}
    (out / "meta.json").write_text(json.dumps(new_meta, indent=1))

    lm_w, lm_b = rows_of(vocab)
    for tmp in glob.glob(str(out / ".labels_*.tmp")):
        os.remove(tmp)

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    try:
        old_term = signal.signal(signal.SIGTERM, stop)
    except ValueError:
        old_term = None
    done_tokens, t0 = 0, time.time()
    todo = [(p, ss) for p, ss in shards if args.redo or not (out / LABELS.format(shard_index(p))).exists()]
    todo_tokens = sum(int(s["ids"].shape[0]) for _, ss in todo for s in ss)
    print(f"{len(shards) - len(todo)} of {len(shards)} shards already labelled; {len(todo)} to do ({todo_tokens} tokens)", flush=True)
    try:
        for n, (p, ss) in enumerate(todo, 1):
            labels = [labels_for(tail, s, lm_w, lm_b, int(meta["top_k"])) for s in ss]
            path = out / LABELS.format(shard_index(p))
            tmp = out / f".{path.name}.tmp"
            torch.save({"format": FORMAT, "keys": [s["key"] for s in ss], "labels": labels}, tmp)
            os.replace(tmp, path)
            done_tokens += sum(int(s["ids"].shape[0]) for s in ss)
            dt = time.time() - t0
            rate = done_tokens / max(dt, 1e-9)
            print(
                f"{path.name}: {n}/{len(todo)} shards, {done_tokens}/{todo_tokens} tokens, {rate:.0f} tok/s, "
                f"about {(todo_tokens - done_tokens) / max(rate, 1e-9) / 60:.1f} min left",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted: the label shards written are kept (rerun to go on)", flush=True)
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    print(f"done: {out} labels {len(samples)} samples of {base} over {len(vocab)} draft ids", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
