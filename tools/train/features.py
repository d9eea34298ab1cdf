"""The target's features for EAGLE-3 training, computed once per sample and cached on disk.

    python -m tools.train.features --target T --data runs/e3_real/train.jsonl --out runs/e3_real/feats \\
        --draft-vocab 8192 --vocab-samples 1000 --max-tokens 384 --threads 1
    python -m tools.train eagle3 --target T --features runs/e3_real/feats --out DIR --minutes 600

Training a head on a real target is starved by the target: its prefill (all positions' logits)
costs most of a training step and is repeated every time a sample is seen, and the full logits
(T x vocabulary floats) are too large to keep. This command runs the target ONCE per sample of a
distilled JSONL ({"image": path|null, "prompt", "answer"}, tools/train/distill.py; its
``--features DIR`` takes the same records from the decoding forwards instead) through the
trainer's own path (``tools.train.eagle3.target_features``: ``sample_ids``, ``AuxTaps``, the
taps drafting uses) and keeps, compactly, what the head's training-time-test loss reads:

* ``ids`` (int32, T), ``prompt_len``;
* ``aux``: the residual stream at the three aux layers (float16, (T, 3 Ht); bfloat16 for a
  sample whose values overflow float16);
* the target's distribution over the DRAFT vocabulary at the rows that predict answer tokens
  (rows prompt_len - 1 .. T - 2) as its top ``--top-k``: ``topk_ids`` (draft ids, int32) and
  ``topk_p`` (float16; the trainer renormalises them);
* image samples: ``image_rows`` (int32) and ``embeds`` (float16): the target's merged input
  embeddings at the image positions, what the head reads there.

The draft vocabulary is fixed first (``--vocab FILE``, or the trainer's ``draft_vocabulary`` of
the first ``--vocab-samples`` rows, ``--draft-vocab`` ids) and written as ``OUT/vocab.json`` in the
trainer's layout ({"draft_to_target", "counts"}); ``OUT/meta.json`` records the aux layers,
top-k, token limit and the target's shape, and a rerun with other settings is refused. Samples go
to shards (``shard_00012.pt``: {"format", "samples", "skipped"}; written to a temporary file and
renamed, so a shard is whole or absent) of ``--shard-samples`` samples. Resumable: the samples
already in shards (matched by content: prompt, image, answer) are skipped, a shard that does not
load is removed and its samples computed again; it reads the data's complete lines only, so it can
run while distill.py appends (rerun it, or ``--wait-minutes M`` to keep polling for new lines
until none came for M minutes; the vocabulary then waits for ``--vocab-samples`` rows the same way). Ctrl-C / SIGTERM write the samples done so far.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

FORMAT = 1
SHARD = "shard_{:05d}.pt"


# ---------------------------------------------------------------- data rows
def row_key(row: dict) -> str:
    """What identifies a data row in the cache: its content (seed, image, prompt, answer)."""
    blob = json.dumps([row.get("seed"), row.get("image"), row.get("prompt"), row.get("answer")])
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def read_rows(path: str) -> list[dict]:
    """The data's complete lines (a last line still being written is left for the next read)."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    return [json.loads(line) for line in data.splitlines(keepends=True) if line.endswith(b"\n") and line.strip()]


def row_sample(row: dict, base: str) -> dict:
    """{"image", "prompt", "answer"} of a data row: images loaded (a path relative to the data's
    directory; a scenes row, {"seed", ...} as distill.py writes it, is rendered again)."""
    from core.images import load_image

    img = row.get("image")
    if img:
        image = load_image(img if os.path.isabs(img) else os.path.join(base, img))
    elif "seed" in row and "image" not in row:
        from tools.scenes.tasks import make_sample

        image = make_sample(row["seed"])["image"]
    else:
        image = None
    return {"image": image, "prompt": row["prompt"], "answer": row["answer"]}


# ---------------------------------------------------------------- target side
def fingerprint(target) -> dict:
    """The target's shape and a checksum of a few weights: a cache is only read with its target
    (the weights rounded to bfloat16 first: the same checksum for a target loaded in either dtype)."""
    emb = target.model.get_input_embeddings().weight
    return {
        "layers": len(target.text_module().layers),
        "hidden_size": int(emb.shape[1]),
        "vocab_size": int(target.vocab_size),
        "checksum": round(float(emb[:8].detach().bfloat16().double().sum()), 4),
    }


def draft_logits(lm_weight: torch.Tensor, lm_bias: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor:
    """The target's logits over the draft vocabulary from its last hidden state: its output
    layer's rows of the draft vocabulary (``lm_weight``, ``lm_bias``, gathered once)."""
    return F.linear(hidden.to(lm_weight.dtype), lm_weight, lm_bias).float()


def sparse_targets(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(draft ids int32, probabilities float32) of the top ``k`` of softmax(``logits``) per row."""
    p = torch.softmax(logits.float(), -1)
    vals, idx = p.topk(min(k, p.shape[-1]), dim=-1)
    return idx.to(torch.int32), vals


def stored_aux(aux: torch.Tensor) -> torch.Tensor:
    """``aux`` as the cache keeps it: float16, or bfloat16 where a value is beyond float16's range."""
    half = aux.half()
    return half if bool(torch.isfinite(half).all()) else aux.bfloat16()


def compact(
    feats: dict, lm_weight, lm_bias, vocab_t: torch.Tensor, k: int, image_token_id, key: str, dtype: torch.dtype = torch.float32
) -> dict:
    """One cache record from ``target_features(..., all_logits=False)``'s output (``dtype``: the
    target's, whose rounding the check of its logits allows for)."""
    ids, plen = feats["ids"], int(feats["prompt_len"])
    T = ids.shape[0]
    hidden = feats["hidden"]
    # the output layer applied here must be the target's own logits: checked on the last position
    last = draft_logits(lm_weight, lm_bias, hidden[-1:])[0]
    ref = feats["last_logits"][vocab_t]
    tol = max(1e-3, 2 * torch.finfo(dtype).eps)  # a bfloat16 target rounds its logits to 8 bits
    if not torch.allclose(last, ref, rtol=tol, atol=tol * max(1.0, float(ref.abs().max()))):
        raise RuntimeError(
            "the target's logits are not its output layer applied to its last hidden state (logit scaling or "
            "soft-capping?): the feature cache cannot compute them from the hidden states"
        )
    tk_ids, tk_p = sparse_targets(draft_logits(lm_weight, lm_bias, hidden[plen - 1 : T - 1]), k)
    aux = stored_aux(feats["aux"])
    rec = {
        "key": key,
        "ids": ids.to(torch.int32),
        "prompt_len": plen,
        "aux": aux,
        "topk_ids": tk_ids,
        "topk_p": tk_p.half(),
        "image_rows": None,
        "embeds": None,
    }
    if feats["embeds"] is not None and image_token_id is not None:
        rows = (ids == image_token_id).nonzero().view(-1)
        if rows.numel():
            rec["image_rows"] = rows.to(torch.int32)
            rec["embeds"] = feats["embeds"][rows].half()
    return rec


# ---------------------------------------------------------------- the cache on disk
def _load_shard(path: str) -> dict:
    d = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("samples"), list):
        raise ValueError("not a feature shard of this format")
    return d


def shard_paths(out: str | Path) -> list[str]:
    return sorted(glob.glob(os.path.join(str(out), "shard_*.pt")))


def shard_index(path: str) -> int:
    return int(os.path.basename(path)[6:11])


def next_shard(out: str | Path) -> int:
    """The index after the cache's last shard."""
    return max((shard_index(p) + 1 for p in shard_paths(out)), default=0)


def write_shard(out: Path, index: int, samples: list[dict], skipped: list[dict]) -> Path:
    """Atomically: a temporary file renamed into place."""
    path = out / SHARD.format(index)
    tmp = out / f".{path.name}.tmp"
    torch.save({"format": FORMAT, "samples": samples, "skipped": skipped}, tmp)
    os.replace(tmp, path)
    return path


class FeatureCache:
    """A feature directory for training: ``meta``, ``vocab`` (draft -> target ids) and every
    cached sample (tensors memory-mapped from the shards); ``feats(i)`` is sample i as
    ``ttt_loss`` takes it. Shards that do not load are left out (reported in ``bad``).
    ``path`` may name several directories, comma-separated: their samples in that order, read as
    one cache where their settings and vocabularies are the same (else ValueError)."""

    def __init__(self, path: str | Path):
        dirs = [Path(p) for p in str(path).split(",") if p]
        self.dir = dirs[0]
        self.samples: list[dict] = []
        self.bad: list[str] = []
        for i, d in enumerate(dirs):
            if not (d / "meta.json").exists() or not (d / "vocab.json").exists():
                raise FileNotFoundError(f"{d}: no feature cache (meta.json, vocab.json; python -m tools.train.features writes them)")
            meta = json.loads((d / "meta.json").read_text())
            vocab = json.loads((d / "vocab.json").read_text())["draft_to_target"]
            if i == 0:
                self.meta, self.vocab = meta, vocab
            elif _settings(meta) != _settings(self.meta) or vocab != self.vocab:
                what = "settings" if _settings(meta) != _settings(self.meta) else "draft vocabulary"
                raise ValueError(f"{d}: its {what} differ from {dirs[0]}'s (caches read together must match)")
            if "labels_of" in meta:
                self.samples += self._relabelled(d, Path(meta["labels_of"]))
                continue
            for p in shard_paths(d):
                try:
                    self.samples += _load_shard(p)["samples"]
                except Exception as e:  # a torn shard: the features command computes it again
                    self.bad.append(f"{os.path.basename(p)} ({type(e).__name__})")

    def _relabelled(self, d: Path, base: Path) -> list[dict]:
        """A label cache (tools/train/revocab.py): the base cache's samples with its targets, those
        of the base shards it has labelled (the others are left out, named in ``bad``)."""
        if not (base / "meta.json").exists():
            raise FileNotFoundError(f"{d} labels {base}, which holds no feature cache")
        out = []
        for p in shard_paths(base):
            lp = d / f"labels_{shard_index(p):05d}.pt"
            try:
                ss = _load_shard(p)["samples"]
                if not lp.exists():
                    self.bad.append(f"{os.path.basename(p)} (not labelled yet)")
                    continue
                lab = torch.load(lp, map_location="cpu", weights_only=True)
                if lab.get("keys") != [s["key"] for s in ss]:
                    raise ValueError("labels of other samples")
                out += [{**s, **x} for s, x in zip(ss, lab["labels"])]
            except Exception as e:
                self.bad.append(f"{os.path.basename(p)} ({type(e).__name__})")
        return out

    def __len__(self) -> int:
        return len(self.samples)

    def tokens(self) -> int:
        return sum(int(s["ids"].shape[0]) for s in self.samples)

    def feats(self, i: int) -> dict:
        s = self.samples[i]
        ids = s["ids"].long()
        emb = None
        if s.get("image_rows") is not None:
            emb = torch.zeros(ids.shape[0], s["embeds"].shape[-1])
            emb[s["image_rows"].long()] = s["embeds"].float()
        return {
            "ids": ids,
            "aux": s["aux"].float(),
            "logits": None,
            "embeds": emb,
            "prompt_len": int(s["prompt_len"]),
            "topk_ids": s["topk_ids"].long(),
            "topk_p": s["topk_p"].float(),
        }


def _settings(meta: dict) -> dict:
    """What caches read together must share: a label cache's own keys left out."""
    return {k: v for k, v in meta.items() if k not in ("labels_of", "tail_check")}


def open_cache(ap, path: str, what: str = "--features") -> FeatureCache:
    """The feature cache at ``path`` for a command line (``what``: its option): ``ap.error`` (a message,
    exit 2) where there is none or it holds no sample yet."""
    try:
        cache = FeatureCache(path)
    except (FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    if not len(cache):
        ap.error(f"{what} {path}: no cached samples yet (python -m tools.train.features fills it)")
    return cache


# ---------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.train.features", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="assets/target")
    ap.add_argument("--data", required=True, help="distilled JSONL of {image, prompt, answer} (tools/train/distill.py)")
    ap.add_argument("--out", required=True, help="the cache's directory")
    ap.add_argument("--vocab", default=None, help="a vocab.json ({'draft_to_target': [...]}) to use instead of computing one")
    ap.add_argument("--draft-vocab", type=int, default=32000, help="draft vocabulary size (computed from the data)")
    ap.add_argument("--vocab-samples", type=int, default=256, help="the first this many rows fix the draft vocabulary")
    ap.add_argument("--aux-layers", default=None, help="three comma-separated layer ids (default [2, L//2, L-3])")
    ap.add_argument("--top-k", type=int, default=64, help="the target's top-k over the draft vocabulary kept per answer row")
    ap.add_argument("--max-tokens", type=int, default=0, help="keep the first this many ids of prompt + answer (0: all)")
    ap.add_argument("--shard-samples", type=int, default=16, help="samples per shard")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "auto"),
        help="the target's dtype for its prefill (bfloat16: several times faster on a CPU with AMX or AVX512-BF16, the features "
        "of the target as it decodes there; auto: the one --dtype auto gives a target on this machine; the cache keeps "
        "float16 / float32 either way)",
    )
    ap.add_argument("--wait-minutes", type=float, default=0.0, help="keep polling the data for new lines until none came for this long")
    ap.add_argument("--poll", type=float, default=60.0, help="seconds between polls (--wait-minutes)")
    args = ap.parse_args(argv)
    if args.top_k < 1 or args.shard_samples < 1 or args.max_tokens < 0:
        ap.error("--top-k and --shard-samples must be at least 1, --max-tokens at least 0")
    from tools.train.eagle3 import parse_aux_layers

    aux_ids = parse_aux_layers(ap, args.aux_layers)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dtype == "auto":  # scripts/e3_data.sh's default, as distill takes it
        from core.device import resolve_dtype

        args.dtype = resolve_dtype("auto")

    from core import adapters
    from core.drafters.eagle3 import AuxTaps, default_aux_layers
    from core.paths import resolve_target
    from tools.train.eagle3 import draft_vocabulary, sample_ids, target_features

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = os.path.dirname(os.path.abspath(args.data))
    target = adapters.load(resolve_target(args.target), dtype=args.dtype, kernels="stock")
    fp = fingerprint(target)
    aux_ids = aux_ids or default_aux_layers(fp["layers"])
    cfg = target.model.config
    image_token_id = getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)
    meta = {
        "format": FORMAT,
        "aux_layer_ids": aux_ids,
        "top_k": args.top_k,
        "max_tokens": args.max_tokens,
        "target": fp,
        "dtype": args.dtype,
    }
    meta_path, vocab_path = out / "meta.json", out / "vocab.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        old.setdefault("dtype", "float32")  # caches written before --dtype
        diff = [k for k in ("format", "aux_layer_ids", "top_k", "max_tokens", "target", "dtype") if old.get(k) != meta[k]]
        if diff:
            ap.error(
                f"{out} holds features made with other settings ({', '.join(f'{k}: {old.get(k)} vs {meta[k]}' for k in diff)}): another --out"
            )

    # ---- the draft vocabulary, fixed before any feature
    if vocab_path.exists():
        vocab = json.loads(vocab_path.read_text())["draft_to_target"]
        if args.vocab and json.loads(Path(args.vocab).read_text())["draft_to_target"] != vocab:
            ap.error(f"{vocab_path} holds another draft vocabulary than {args.vocab}")
    elif args.vocab:
        voc = json.loads(Path(args.vocab).read_text())
        vocab = [int(t) for t in voc["draft_to_target"]]
        if len(set(vocab)) != len(vocab) or not all(0 <= t < target.vocab_size for t in vocab):
            ap.error(f"{args.vocab}: the draft vocabulary must be distinct ids of the target's vocabulary (0..{target.vocab_size - 1})")
        vocab_path.write_text(json.dumps({"draft_to_target": vocab, "counts": voc.get("counts", {})}))
        print(f"draft vocabulary: {len(vocab)} ids from {args.vocab}", flush=True)
    else:
        t0 = time.time()
        rows = [r for r in read_rows(args.data) if r.get("answer") is not None]
        last_new = time.time()
        while len(rows) < args.vocab_samples and time.time() - last_new < args.wait_minutes * 60:
            print(f"waiting for {args.vocab_samples} rows to fix the draft vocabulary ({len(rows)} so far)", flush=True)
            time.sleep(args.poll)
            more = [r for r in read_rows(args.data) if r.get("answer") is not None]
            last_new = time.time() if len(more) > len(rows) else last_new
            rows = more
        rows = rows[: args.vocab_samples]
        if not rows:
            ap.error(f"{args.data}: no rows with an answer to fix the draft vocabulary from")
        vocab, counts = draft_vocabulary(target, [row_sample(r, base) for r in rows], args.draft_vocab)
        vocab_path.write_text(json.dumps({"draft_to_target": vocab, "counts": counts}))
        note = "" if len(rows) >= args.vocab_samples else f" (only {len(rows)} of --vocab-samples {args.vocab_samples} there)"
        print(
            f"draft vocabulary: {len(vocab)} ids from {len(counts)} distinct tokens of {len(rows)} rows{note} ({time.time() - t0:.0f}s)",
            flush=True,
        )
    meta["draft_vocab"] = len(vocab)
    meta_path.write_text(json.dumps(meta, indent=1))

    # ---- what is done
    for tmp in glob.glob(str(out / ".shard_*.tmp")):
        os.remove(tmp)
    done: Counter = Counter()
    next_index = 0
    for p in shard_paths(out):
        try:
            d = _load_shard(p)
        except Exception as e:
            print(f"{os.path.basename(p)} does not load ({type(e).__name__}: {e}): removed, its samples are computed again", flush=True)
            os.remove(p)
            continue
        done.update(s["key"] for s in d["samples"])
        done.update(s["key"] for s in d.get("skipped", []))
        next_index = max(next_index, shard_index(p) + 1)
    have = sum(done.values())

    vocab_t = torch.tensor(vocab)
    lm = target.model.get_output_embeddings()
    with torch.no_grad():
        lm_w = lm.weight[vocab_t].float().clone()
        lm_b = lm.bias[vocab_t].float().clone() if getattr(lm, "bias", None) is not None else None
    taps = AuxTaps(target, aux_ids)
    pending: list[dict] = []
    skipped: list[dict] = []
    stats = {"new": 0, "tokens": 0, "bytes": 0, "busy": 0.0}  # busy: seconds computing (not waiting)

    def flush() -> None:
        nonlocal next_index
        if not pending and not skipped:
            return
        path = write_shard(out, next_index, pending, skipped)
        size = path.stat().st_size
        stats["bytes"] += size
        print(f"wrote {path.name}: {len(pending)} samples, {len(skipped)} skipped, {size / 1e6:.1f} MB", flush=True)
        next_index += 1
        pending.clear()
        skipped.clear()

    def run_rows(rows: list[dict]) -> int:
        """Compute the rows not done yet; returns how many were new."""
        todo = []
        seen = Counter(done)
        for r in rows:
            k = row_key(r)
            if seen[k] > 0:
                seen[k] -= 1
            else:
                todo.append((k, r))
        for k, r in todo:
            t_row = time.time()
            if r.get("answer") is None:
                skipped.append({"key": k, "why": "no answer"})
            else:
                sample = row_sample(r, base)
                plen = sample_ids(target, sample)[0].length
                if args.max_tokens and plen >= args.max_tokens:  # no answer token would be left
                    skipped.append({"key": k, "why": f"prompt of {plen} tokens, --max-tokens {args.max_tokens}"})
                else:
                    f = target_features(target, taps, sample, all_logits=False, max_tokens=args.max_tokens)
                    pending.append(compact(f, lm_w, lm_b, vocab_t, args.top_k, image_token_id, k, target.dtype))
                    stats["new"] += 1
                    stats["tokens"] += int(f["ids"].shape[0])
            done[k] += 1
            stats["busy"] += time.time() - t_row
            dt = stats["busy"]
            n_done = sum(done.values())
            print(
                f"{n_done}/{len(rows)} rows ({stats['new']} new, {stats['tokens']} tokens in {dt:.0f}s: "
                f"{stats['tokens'] / max(dt, 1e-9):.1f} tok/s, {dt / max(stats['new'], 1):.1f} s/sample)",
                flush=True,
            )
            if len(pending) + len(skipped) >= args.shard_samples:
                flush()
        flush()
        return len(todo)

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    try:
        old_term = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: no handler
        old_term = None
    try:
        rows = read_rows(args.data)
        print(f"{args.data}: {len(rows)} rows, {have} already in {out}", flush=True)
        run_rows(rows)
        last_new = time.time()
        while args.wait_minutes > 0 and time.time() - last_new < args.wait_minutes * 60:
            time.sleep(args.poll)
            rows = read_rows(args.data)
            if run_rows(rows):
                last_new = time.time()
    except KeyboardInterrupt:
        print("interrupted: writing the samples done", flush=True)
        flush()
        return 130
    finally:
        taps.remove()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    tok = stats["tokens"]
    per_tok = f", {stats['bytes'] / tok:.0f} bytes per token" if tok else ""
    print(f"done: {sum(done.values())} rows in {out} ({stats['new']} new this run{per_tok})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
