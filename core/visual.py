"""Visual dependence of every output token: which tokens did the image decide?

For a finished run (its prompt, image and output tokens) the target is run teacher-forced twice
over ``prompt + output``: once with the image (exactly the run's inputs) and once without it.
For every output token ``o_i`` both forwards give the target's next-token distribution at that
point, ``p_img`` and ``p_noimg`` (the distribution ``o_i`` was chosen from), and we record

    kl       KL(p_img || p_noimg) in nats: how much information the image added at this token
    changed  argmax(p_img) != argmax(p_noimg): greedy decoding would have said something else

A token is **image-dependent** when ``changed`` or ``kl > KL_THRESHOLD`` (1.0 nat). The argmax
test alone misses tokens whose top choice survives but whose distribution is reshaped (e.g. the
image moves 60% of the mass onto a colour word that was already top-1); KL alone misses near-ties
flipped by a tiny shift. Scale of 1 nat: if the image makes the model certain of a token
that the text-only model gave probability q, the KL is ``-log q``; 1 nat is q = 1/e = 0.37, i.e.
"without the picture this token was at best a one-in-three guess". Smaller shifts are left out on
purpose: the class is "tokens the picture decided", not "tokens it nudged". The threshold
is a parameter; the per-token numbers are kept so any other cut can be applied afterwards.

Baseline: **no image** (``baseline="none"``, the default) rather than a neutral image. The text
-only prompt comes from ``target.encode(prompt, None)``: the model's own template without image
tokens. A neutral (grey) image would still put hundreds of image tokens in the context whose
*content* the model reads (a grey image is "a grey picture", not "no picture"), and it shifts every
later position; removing the image measures the dependence on the image's presence, which is what
a drafter that never sees the image (text-only drafters, n-gram lookup) lacks. ``baseline="grey"``
is offered to measure dependence on the image's *content* instead (same image size, mid grey).

The with-image side is one teacher-forced forward too (not the verify logits of the run): it is
the same numbers up to float rounding and works for any trace, speculative or not.

Cost: two target forwards over ``prompt + output`` (recorded in seconds as ``cost_s``).
"""

from __future__ import annotations

import time

import torch

KL_THRESHOLD = 1.0  # nats


@torch.inference_mode()
def teacher_forced(target, enc, output: list[int], want_hidden: bool = False, timings: dict | None = None):
    """The target's rows over ``prompt + output`` in one prefill and one block forward.

    Returns ``(logits, hidden, prefill_hidden, embeds)``: ``logits[i]`` is the distribution the
    i-th output token was chosen from (row 0 from the prefill; rows 1.. from feeding ``output``),
    plus one extra last row (after the last output token). ``hidden[j]`` (if asked) is the
    target's last hidden state at output token j (the state the engine passes to a drafter's
    commit for that token); ``prefill_hidden`` (T, H) and ``embeds`` are what a prefill gives
    ``DraftContext`` (``target_hidden`` / ``target_embeds``). ``timings``: gets ``prefill_s``."""
    t0 = time.perf_counter()
    sess, last, pre_hidden = target.prefill(enc, want_hidden=want_hidden)
    if timings is not None:
        timings["prefill_s"] = time.perf_counter() - t0
    rows = [last.view(1, -1).float()]
    hidden = None
    if output:
        logits, hidden = target.forward(sess, list(output), want_hidden=want_hidden)
        rows.append(logits.float())
    return torch.cat(rows), hidden, pre_hidden, sess.embeds


def _neutral(image):
    from PIL import Image

    return Image.new("RGB", image.size, (128, 128, 128))


@torch.inference_mode()
def visual_dependence(target, prompt: str, image, output: list[int], baseline: str = "none", threshold: float = KL_THRESHOLD) -> dict:
    """Per-token visual dependence of ``output`` (see module docstring). Returns a JSON-able dict
    ``{"baseline", "threshold_nats", "cost_s", "tokens": [{"index", "token", "kl", "argmax_img",
    "argmax_noimg", "changed", "image_dependent"}], "n_dependent", "share_dependent"}``."""
    if baseline not in ("none", "grey"):
        raise ValueError(f"baseline must be 'none' or 'grey', got {baseline!r}")
    t0 = time.perf_counter()
    out = list(output)
    n = len(out)
    enc_img = target.encode(prompt, image)
    if image is None or not target.is_multimodal:
        enc_base = enc_img  # nothing to remove: the control case (KL exactly 0)
    else:
        enc_base = target.encode(prompt, None if baseline == "none" else _neutral(image))
    li, _, _, _ = teacher_forced(target, enc_img, out[:-1] if n else [])
    if enc_base is enc_img:
        lb = li
    else:
        lb, _, _, _ = teacher_forced(target, enc_base, out[:-1] if n else [])
    li, lb = li[:n], lb[:n]
    lpi, lpb = torch.log_softmax(li, -1), torch.log_softmax(lb, -1)
    kl = (lpi.exp() * (lpi - lpb)).sum(-1).clamp_min(0.0)
    ai, ab = li.argmax(-1), lb.argmax(-1)
    records = []
    for i in range(n):
        k, changed = float(kl[i]), bool(ai[i] != ab[i])
        records.append(
            {
                "index": i,
                "token": int(out[i]),
                "kl": round(k, 6),
                "argmax_img": int(ai[i]),
                "argmax_noimg": int(ab[i]),
                "changed": changed,
                "image_dependent": changed or k > threshold,
            }
        )
    dep = sum(r["image_dependent"] for r in records)
    return {
        "baseline": baseline if enc_base is not enc_img else "same-input",
        "threshold_nats": threshold,
        "cost_s": round(time.perf_counter() - t0, 6),
        "tokens": records,
        "n_dependent": dep,
        "share_dependent": round(dep / n, 4) if n else 0.0,
    }


def position_attempts(trace) -> list[dict]:
    """For every output index: drafted nodes tried there (siblings at that depth whose parent was
    accepted) and whether one was accepted; the output's origin (prefill/accepted/bonus/correction)."""
    n = len(trace.output)
    rows = [{"tried": 0, "accepted": 0, "origin": None} for _ in range(n)]
    for i, (_, origin, _) in enumerate(trace.token_origins()):
        if i < n:
            rows[i]["origin"] = origin
    k = 1 if trace.output else 0  # output tokens before the step (the root is out[k-1])
    for s in trace.steps:
        for node in list(s.accepted) + list(s.rejected):
            j = k + s.depths[node] - 1
            if j < n:
                rows[j]["tried"] += 1
        for node in s.accepted:
            j = k + s.depths[node] - 1
            if j < n:
                rows[j]["accepted"] = 1
        k += len(s.committed)
    return rows


def split_acceptance(trace, visual: dict | None = None) -> dict:
    """Acceptance by class: image-dependent tokens vs the others (``visual`` defaults to
    ``trace.visual``). Per class:

    positions      output tokens of the class
    tried          of them, positions where the drafter proposed at least one token
    accept_rate    of those, positions where a draft was accepted (accepted / tried positions)
    node_rate      accepted / drafted nodes tried there (a tree tries siblings: lower)
    from_draft     share of the class's tokens that came from accepted drafts
    tau_like       1 / (1 - from_draft): tokens per target forward a run made only of such tokens
                   would get (each target forward adds one token; drafts add the rest)"""
    visual = visual if visual is not None else getattr(trace, "visual", None)
    if not visual:
        raise ValueError("no visual-dependence records: compute them first (api.visual_dependence)")
    flags = {r["index"]: r["image_dependent"] for r in visual["tokens"]}
    att = position_attempts(trace)
    out = {}
    for name, want in (("image_dependent", True), ("other", False)):
        idx = [i for i in range(len(att)) if flags.get(i) is want]
        tried = [i for i in idx if att[i]["tried"]]
        acc = sum(att[i]["accepted"] for i in tried)
        nodes = sum(att[i]["tried"] for i in tried)
        drafted = sum(1 for i in idx if att[i]["origin"] == "accepted")
        fd = drafted / len(idx) if idx else 0.0
        out[name] = {
            "positions": len(idx),
            "tried": len(tried),
            "accept_rate": round(acc / len(tried), 4) if tried else None,
            "node_rate": round(acc / nodes, 4) if nodes else None,
            "from_draft": round(fd, 4),
            "tau_like": round(1 / (1 - fd), 4) if fd < 1 else float("inf"),
        }
    return out


def describe(split: dict) -> str:
    """'image-dependent tokens: 41% of drafts accepted (12 positions); other tokens: 93% (40)'."""

    def one(label, c):
        r = c["accept_rate"]
        return (
            f"{label}: {'n/a' if r is None else f'{100 * r:.0f}%'} of drafted positions accepted "
            f"({c['tried']} of {c['positions']} tokens drafted), tau-like {c['tau_like']}"
        )

    return "; ".join((one("image-dependent tokens", split["image_dependent"]), one("other tokens", split["other"])))
