"""The decoding loop: autoregressive and speculative decoding are the same loop.

    prefill -> first token (the root)
    repeat:  draft a tree below the root          (drafter.propose; empty = plain AR step)
             verify [root] + tree in ONE forward  (tree mask, positions = prefix + depth)
             accept a path + one target token     (core/acceptance.py)
             keep the accepted path's KV slots    (adapter.keep)
             the target's token becomes the root

Every step is recorded in a Trace (core/trace.py).
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from .acceptance import accept_greedy, accept_sampling
from .adapters import HFAdapter, InputError
from .drafters.base import DraftContext, DraftSpec, Drafter
from .policy import AutoPolicy
from .sampling import SamplingConfig, probs, sample
from .trace import Step, Trace
from .tree import DraftTree, verify_layout

EMPTY = DraftTree()


def context_limit(adapter: HFAdapter) -> int:
    cfg = adapter.model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return int(getattr(cfg, "max_position_embeddings", 0) or 1 << 30)


@torch.inference_mode()
def generate(target: HFAdapter, prompt: str, image=None, drafter: Drafter | None = None,
             spec: DraftSpec = DraftSpec(), sampling: SamplingConfig = SamplingConfig(),
             max_new_tokens: int = 128, detail: bool = True,
             on_step: Callable[[Trace], None] | None = None,
             should_stop: Callable[[], bool] | None = None, meta: dict | None = None,
             policy: AutoPolicy | None = None,
             on_phase: Callable[..., None] | None = None) -> Trace:
    """Decode ``prompt`` (+ ``image``) with ``target``; speculatively if ``drafter`` is given.

    ``detail`` records the target probability of every drafted token (a softmax over the
    verified rows); the rest of the trace is always recorded. ``spec.adaptive``: each step's
    chain length is chosen by ``policy`` (core/policy.py; a fresh one from the target's measured
    costs when None; pass the same one across runs to keep what it learned).

    ``on_phase(name, seconds, **data)`` is called after each phase of a step, in order:
    "propose", "verify" (data: ``tokens`` fed, ``positions``, ``logits`` of every row), "accept",
    "keep", "commit", "record". Profilers and the integration audit read it; the loop is never
    patched."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    t_start = time.perf_counter()
    # random draws are made next to the distributions they sample (the target's device)
    gen = torch.Generator(device=target.device).manual_seed(int(sampling.seed or 0))
    enc = target.encode(prompt, image)
    limit = context_limit(target)
    reserve = 1 + (spec.max_nodes if drafter is not None else 0)
    if enc.length + reserve >= limit:
        raise InputError(f"prompt too long: {enc.length} tokens, the model's context is {limit}")
    max_new_tokens = min(max_new_tokens, limit - enc.length - reserve)

    adaptive = drafter is not None and spec.adaptive
    if adaptive and policy is None:
        policy = AutoPolicy.measured(target)
    policy = policy if adaptive else None
    skip_ok = bool(getattr(drafter, "can_skip", False))

    trace = Trace(meta=dict(meta or {}), prompt_tokens=enc.length)
    trace.meta.setdefault("target", target.name)
    trace.meta.setdefault("drafter", getattr(drafter, "name", None))
    trace.meta.setdefault("strategy", spec.strategy if drafter is not None else "ar")
    trace.meta.setdefault("sampling", {"temperature": sampling.temperature, "top_k": sampling.top_k,
                                       "top_p": sampling.top_p, "seed": sampling.seed})
    trace.meta.setdefault("dtype", str(target.dtype).replace("torch.", ""))
    if drafter is not None:
        trace.meta.setdefault("spec", {"gamma": spec.gamma, "branching": list(spec.branching),
                                       "depth": spec.depth, "top_k": spec.top_k, "budget": spec.budget,
                                       "adaptive": spec.adaptive})
    trace.meta.setdefault("kernels", {"target": target.kernels.get("paths", "stock"),
                                      "drafter": getattr(getattr(drafter, "lm", None), "kernels", {}).get("paths")})

    sess, logits, hidden = target.prefill(enc, want_hidden=bool(drafter and drafter.needs_hidden))
    root = _pick(logits, sampling, gen)
    out = [root]
    trace.first_token = root
    trace.t_prefill = time.perf_counter() - t_start
    eos = target.eos_ids
    stop = "eos" if root in eos else ("length" if max_new_tokens <= 1 else "")

    if drafter is not None and not stop:
        t0 = time.perf_counter()
        drafter.begin(DraftContext(target=target, prompt_ids=enc.input_ids[0].tolist(), prompt=prompt,
                                   image=image, encoded=enc, target_hidden=hidden, tokens=out,
                                   target_embeds=sess.embeds, policy=policy))
        trace.t_prefill += time.perf_counter() - t0

    while not stop:
        if should_stop is not None and should_stop():
            stop = "cancelled"
            break
        t0 = time.perf_counter()
        drafted = drafter is not None and (policy is None or not skip_ok or policy.should_draft(spec.gamma))
        tree = drafter.propose(root, spec, sampling, gen) if drafted else EMPTY
        if policy is not None and len(tree):
            tree = policy.trim(tree)        # drafted tokens not worth their share of the verify
        t1 = time.perf_counter()
        if on_phase is not None:
            on_phase("propose", t1 - t0)
        base = sess.length
        if len(tree):
            depths, anc = verify_layout(tree)
            positions = base + depths
            attn = torch.cat([torch.ones(len(depths), base, dtype=torch.bool), anc], dim=1)
            logits, hidden = target.forward(sess, [root] + tree.tokens, positions, attn,
                                            want_hidden=drafter.needs_hidden)
        else:
            positions = torch.tensor([base])
            logits, hidden = target.forward(sess, [root], want_hidden=bool(drafter and drafter.needs_hidden))
        t2 = time.perf_counter()
        if on_phase is not None:
            on_phase("verify", t2 - t1, tokens=[root] + tree.tokens, positions=positions, logits=logits)
            t2 = time.perf_counter()

        if sampling.greedy:
            verdict = accept_greedy(tree, logits.argmax(-1).tolist())
            rows_p = None
        else:
            rows_p = probs(logits, sampling)
            verdict = accept_sampling(tree, rows_p, gen)
        new = [tree.tokens[a] for a in verdict.accepted] + [verdict.token]
        # stop at EOS or at the length budget, exactly where plain decoding would
        for i, tok in enumerate(new):
            if tok in eos:
                new, stop = new[: i + 1], "eos"
                break
        room = max_new_tokens - len(out)
        if len(new) >= room:
            new, stop = new[:room], stop or "length"
        out.extend(new)
        # accepted tokens past EOS or the budget were never committed: recorded as discarded
        accepted, discarded = verdict.accepted[:len(new)], verdict.accepted[len(new):]
        kept = [0] + [a + 1 for a in verdict.accepted]
        t_acc = time.perf_counter()
        if on_phase is not None:
            on_phase("accept", t_acc - t2)
            t_acc = time.perf_counter()
        if not stop:
            target.keep(sess, base, kept)
        t3 = time.perf_counter()
        if on_phase is not None:
            on_phase("keep", t3 - t_acc)
            t3 = time.perf_counter()
        if drafter is not None and not stop:
            drafter.commit(tree, verdict.accepted, new,
                           hidden[kept] if hidden is not None else None)
        t4 = time.perf_counter()

        if policy is not None:
            policy.observe(tree, verdict.accepted, verdict.rejected, (t1 - t0) + (t4 - t3), t2 - t1,
                           t3 - t2, drafted)
        if on_phase is not None:
            on_phase("commit", time.perf_counter() - t3)
        t5 = time.perf_counter()
        p_nodes = None
        if detail and len(tree):
            if rows_p is None:
                rows_p = torch.softmax(logits.float(), -1)
            par = torch.tensor([p + 1 for p in tree.parents], device=rows_p.device)
            tok = torch.tensor(tree.tokens, device=rows_p.device)
            p_nodes = [round(x, 5) for x in rows_p[par, tok].tolist()]
        trace.steps.append(Step(
            tokens=list(tree.tokens), parents=list(tree.parents), depths=list(tree.depths),
            q=[round(x, 5) for x in tree.q_tok], p=p_nodes, accepted=accepted,
            rejected=verdict.rejected, token=verdict.token, kind=verdict.kind, committed=new,
            t_draft=(t1 - t0) + (t4 - t3), t_verify=t2 - t1, t_other=t3 - t2 + (time.perf_counter() - t4),
            discarded=discarded))
        trace.t_trace += time.perf_counter() - t5
        if on_phase is not None:
            on_phase("record", time.perf_counter() - t5)
        root = new[-1]
        if on_step is not None:
            trace.output = out
            on_step(trace)

    trace.output = out
    trace.stop_reason = stop
    if policy is not None:
        trace.meta["policy"] = policy.to_json()
    trace.wall_s = time.perf_counter() - t_start
    trace.text = target.decode(out)
    trace.finish(target.decode_piece)
    return trace


def _pick(logits: torch.Tensor, sampling: SamplingConfig, gen) -> int:
    if sampling.greedy:
        return int(logits.argmax(-1))
    return sample(probs(logits, sampling), gen)
