"""The decoding loop: autoregressive and speculative decoding are the same loop.

    generate: prefill -> first token (the root), then step() until EOS / the budget
    step:    draft a tree below the root          (drafter.propose; empty = plain AR step)
             verify [root] + tree in ONE forward  (tree mask, positions = prefix + depth)
             accept a path + one target token     (core/acceptance.py)
             keep the accepted path's KV slots    (adapter.keep)
             commit: the drafter and the policy see what was kept; the target's token is the new root

Every step is recorded in a Trace (core/trace.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from collections.abc import Callable

import torch

from .acceptance import accept_greedy, accept_sampling
from .adapters import HFAdapter
from .errors import InputError
from .drafters.base import DraftContext, DraftSpec, Drafter, rounded_copies
from .policy import AutoPolicy
from .rows import STOCK, RowSet, row_set
from .sampling import Noise, SamplingConfig, probs, sample
from .trace import Step, Trace
from .tree import DraftTree, verify_layout

EMPTY = DraftTree()


def context_limit(adapter: HFAdapter) -> int:
    cfg = adapter.model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return int(getattr(cfg, "max_position_embeddings", 0) or 1 << 30)


@torch.inference_mode()
def generate(
    target: HFAdapter,
    prompt: str,
    image=None,
    drafter: Drafter | None = None,
    spec: DraftSpec = DraftSpec(),
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 128,
    detail: bool = True,
    on_step: Callable[[Trace], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    meta: dict | None = None,
    policy: AutoPolicy | None = None,
    on_phase: Callable[..., None] | None = None,
    exact: bool = True,
) -> Trace:
    """Decode ``prompt`` (+ ``image``) with ``target``; speculatively if ``drafter`` is given.

    ``detail`` records the target probability of every drafted token (a softmax over the
    verified rows); the rest of the trace is always recorded. ``spec.adaptive``: each step's
    chain length is chosen by ``policy`` (core/policy.py; a fresh one from the target's measured
    costs when None; pass the same one across runs to keep what it learned).

    ``on_phase(name, seconds, **data)`` is called after each phase of a step, in order:
    "propose", "verify" (data: ``tokens`` fed, ``positions``, ``logits`` of every row), "accept",
    "keep", "commit", "record". Profilers and the integration audit read it; the loop is never
    patched.

    ``exact`` (default): every target forward after the prefill runs at a row count of the
    target's row-invariant group (``core.rows``), plain steps and verifies alike, so speculative
    output is plain output bit for bit. ``exact=False`` (plain decoding only): unpadded one-row
    steps, the fastest plain decoding where padding costs time."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    t_start = time.perf_counter()
    # random draws are made next to the distributions they sample (the target's device); the
    # coupled rule's noise is keyed by position (core/sampling.py)
    gen = torch.Generator(device=target.device).manual_seed(int(sampling.seed or 0))
    noise = Noise(int(sampling.seed or 0), gen)
    enc = target.encode(prompt, image)
    limit = context_limit(target)
    if drafter is not None and not exact:
        raise InputError("speculative decoding always runs exact (row-invariant) forwards")
    reserve = 1 + (spec.max_nodes if drafter is not None else 0)  # KV slots one step may fill
    _check_fits(enc.length, reserve, limit)  # before any forward
    path = target.path  # the forward this decoding runs on: its sessions and its row set agree
    rows = row_set(target, path=path) if exact else STOCK
    if rows.exact:
        reserve = rows.pad(reserve) or rows.cap  # its padded forward
        _check_fits(enc.length, reserve, limit)
    max_new_tokens = min(max_new_tokens, limit - enc.length - reserve)

    adaptive = drafter is not None and spec.adaptive
    if adaptive and policy is None:
        policy = AutoPolicy.measured(target)
    policy = policy if adaptive else None

    trace = Trace(meta=dict(meta or {}), prompt_tokens=enc.length)
    trace.meta.setdefault("target", target.name)
    trace.meta.setdefault("drafter", getattr(drafter, "name", None))
    trace.meta.setdefault("strategy", spec.strategy if drafter is not None else "ar")
    trace.meta.setdefault(
        "sampling",
        {
            "temperature": sampling.temperature,
            "top_k": sampling.top_k,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
            "rule": sampling.rule,
        },
    )
    trace.meta.setdefault("dtype", str(target.dtype).replace("torch.", ""))
    trace.meta.setdefault("rows", {"exact": rows.exact, "sizes": list(rows.sizes)})
    if drafter is not None:
        trace.meta.setdefault(
            "spec",
            {
                "gamma": spec.gamma,
                "branching": list(spec.branching),
                "depth": spec.depth,
                "top_k": spec.top_k,
                "budget": spec.budget,
                "adaptive": spec.adaptive,
            },
        )
    trace.meta.setdefault(
        "kernels",
        {"target": target.kernels.get("paths", "stock"), "drafter": getattr(drafter, "kernels", {}).get("paths")},
    )
    if drafter is not None:  # its products on rounded copies of its weights ([]: its own weights)
        trace.meta.setdefault("drafter_rounding", rounded_copies(drafter))
    sess, logits, hidden = target.prefill(enc, want_hidden=bool(drafter and drafter.needs_hidden), path=path)
    trace.meta.setdefault("forward", sess.path)  # compiled (core/compiled.py) or eager
    trace.meta.setdefault("prefill", sess.prefill)  # the prompt's forward: compiled where measured cheaper
    # greedy, no target probabilities asked: a step reads each row's first and second logits only,
    # which the target may screen (core/screen.py) without changing either
    sess.top_only = sampling.greedy and not detail
    # and whether it does: the row counts whose lm_head this session takes through the screen
    trace.meta.setdefault("head_screened", list(getattr(target, "head_screened", lambda s: [])(sess)))
    root = _pick(logits, sampling, noise, enc.length)
    out = [root]
    trace.first_token = root
    trace.first_margin = _margins(logits.view(1, -1))[0]
    trace.t_prefill = time.perf_counter() - t_start
    stop = "eos" if root in target.eos_ids else ("length" if max_new_tokens <= 1 else "")

    if drafter is not None and not stop:
        t0 = time.perf_counter()
        drafter.begin(
            DraftContext(
                target=target,
                prompt_ids=enc.input_ids[0].tolist(),
                prompt=prompt,
                image=image,
                encoded=enc,
                target_hidden=hidden,
                tokens=list(out),  # a copy: drafters learn the rest from commit()
                target_embeds=sess.embeds,
                policy=policy,
            )
        )
        trace.t_prefill += time.perf_counter() - t0

    run = Decoding(
        target,
        drafter,
        spec,
        sampling,
        noise,
        policy,
        sess,
        out,
        trace,
        max_new_tokens,
        detail,
        skip_ok=bool(getattr(drafter, "can_skip", False)),
        on_phase=on_phase,
        rows=rows,
    )
    if not stop:
        stop = steps(run, root, should_stop, on_step)

    trace.output = out
    trace.stop_reason = stop
    if policy is not None:
        trace.meta["policy"] = policy.to_json()
    trace.wall_s = time.perf_counter() - t_start
    trace.text = target.decode(out)
    trace.finish(target.decode_piece)
    return trace


def _check_fits(prompt_tokens: int, reserve: int, limit: int) -> None:
    if prompt_tokens + reserve >= limit:
        raise InputError(f"prompt too long: {prompt_tokens} tokens, the model's context is {limit}")


@dataclass
class Decoding:
    """What one ``generate`` call's steps share: the models, the settings, the target's KV
    session, the output so far (``out``, grown by every step) and the trace being recorded."""

    target: HFAdapter
    drafter: Drafter | None
    spec: DraftSpec
    sampling: SamplingConfig
    noise: Noise  # the decoding's randomness (its torch.Generator is ``noise.generator``)
    policy: AutoPolicy | None
    sess: object
    out: list[int]
    trace: Trace
    max_new_tokens: int
    detail: bool = True
    skip_ok: bool = False
    on_phase: Callable[..., None] | None = None
    rows: RowSet = STOCK  # the row counts target forwards run at (core/rows.py)


class _Clock:
    """Times consecutive phases of a step and reports each through ``on_phase``; the callback's
    own time is never counted in a phase."""

    def __init__(self, on_phase):
        self.on_phase, self.t = on_phase, time.perf_counter()

    def phase(self, name: str, **data) -> float:
        seconds = time.perf_counter() - self.t
        if self.on_phase is not None:
            self.on_phase(name, seconds, **data)
        self.t = time.perf_counter()
        return seconds


def steps(run: Decoding, root: int, should_stop=None, on_step=None) -> str:
    """Step until EOS, the length budget or ``should_stop``; returns the stop reason. The one
    loop of live decoding and of replay against a recorded target (core/replay.py)."""
    stop = ""
    while not stop:
        if should_stop is not None and should_stop():
            return "cancelled"
        new, stop = step(run, root)
        root = new[-1]
        if on_step is not None:
            run.trace.output = run.out
            on_step(run.trace)
    return stop


def step(run: Decoding, root: int) -> tuple[list[int], str]:
    """One step below ``root`` (the last committed token): draft a tree (empty = a plain AR
    step), verify ``[root] + tree`` in one target forward, accept a path plus one target token,
    commit it (target KV, drafter, policy) and record it in the trace. Returns the tokens
    committed and the stop reason ("" = go on)."""
    d, clock = run.drafter, _Clock(run.on_phase)
    # draft
    drafted = d is not None and (run.policy is None or not run.skip_ok or run.policy.should_draft(run.spec.gamma))
    run.noise.root = run.sess.length  # the root's position: a child at depth d lives at root + d
    tree = d.propose(root, run.spec, run.sampling, run.noise) if drafted else EMPTY
    if run.policy is not None and len(tree):
        tree = run.policy.trim(tree)  # drafted tokens not worth their share of the verify
    if run.rows.exact and len(tree) >= run.rows.cap:
        tree = tree.truncate(list(range(run.rows.cap - 1)))  # the first nodes: ancestor-closed
    t_propose = clock.phase("propose")
    # verify: [root] + tree in ONE forward, the tree mask over the cached prefix
    base, fed = run.sess.length, [root] + tree.tokens
    want_hidden = bool(d and d.needs_hidden)
    pad = run.rows.pad(len(fed)) if run.rows.exact else None
    if len(tree):
        depths, mask = verify_layout(tree, base)
        positions = base + depths
        logits, hidden = run.target.forward(run.sess, fed, positions, mask, want_hidden=want_hidden, rows=pad)
    else:
        positions = torch.tensor([base])
        logits, hidden = run.target.forward(run.sess, fed, positions, want_hidden=want_hidden, rows=pad)
    t_verify = clock.phase("verify", tokens=fed, positions=positions, logits=logits)
    # accept: each row's choice of the next token, then the longest drafted path that agrees
    if run.sampling.greedy:
        verdict, rows_p = accept_greedy(tree, greedy(logits)), None
    elif run.sampling.rule == "coupled":
        rows_p = probs(logits, run.sampling)
        verdict = accept_greedy(tree, run.noise.choose(rows_p, (positions + 1).tolist()))
    else:
        rows_p = probs(logits, run.sampling)
        verdict = accept_sampling(tree, rows_p, run.noise.generator)
    new, stop = _cut([tree.tokens[a] for a in verdict.accepted] + [verdict.token], run)
    run.out.extend(new)
    kept = [0] + [a + 1 for a in verdict.accepted]  # rows of the root and the accepted path
    t_accept = clock.phase("accept")
    # commit: the target keeps the accepted path's KV slots, the drafter and the policy learn
    if not stop:
        run.target.keep(run.sess, base, kept)
    t_keep = clock.phase("keep")
    t0 = time.perf_counter()
    if d is not None and not stop:
        d.commit(tree, verdict.accepted, new, hidden[kept] if hidden is not None else None)
    t_commit = time.perf_counter() - t0
    if run.policy is not None:
        run.policy.observe(tree, verdict.accepted, verdict.rejected, t_propose + t_commit, t_verify, t_accept + t_keep, drafted)
    t_after_commit = clock.phase("commit") - t_commit
    _record(
        run,
        tree,
        verdict,
        new,
        logits,
        rows_p,
        clock,
        t_draft=t_propose + t_commit,
        t_verify=t_verify,
        t_other=t_accept + t_keep + t_after_commit,
    )
    return new, stop


def _cut(new: list[int], run: Decoding) -> tuple[list[int], str]:
    """The step's tokens up to EOS or the length budget, exactly where plain decoding stops."""
    stop = ""
    for i, tok in enumerate(new):
        if tok in run.target.eos_ids:
            new, stop = new[: i + 1], "eos"
            break
    room = run.max_new_tokens - len(run.out)
    if len(new) >= room:
        new, stop = new[:room], stop or "length"
    return new, stop


def _record(
    run: Decoding, tree: DraftTree, verdict, new: list[int], logits, rows_p, clock: _Clock, t_draft: float, t_verify: float, t_other: float
) -> None:
    """Append the step to the trace; accepted tokens past EOS or the budget were never committed
    and are recorded as discarded. ``detail``: the target probability of every drafted token."""
    t0 = clock.t
    p_nodes = None
    if run.detail and len(tree):
        if rows_p is None:
            rows_p = torch.softmax(logits.float(), -1)
        par = torch.tensor([p + 1 for p in tree.parents], device=rows_p.device)
        tok = torch.tensor(tree.tokens, device=rows_p.device)
        p_nodes = [round(x, 5) for x in rows_p[par, tok].tolist()]
    run.trace.steps.append(
        Step(
            tokens=list(tree.tokens),
            parents=list(tree.parents),
            depths=list(tree.depths),
            q=[round(x, 5) for x in tree.q_tok],
            p=p_nodes,
            accepted=verdict.accepted[: len(new)],
            rejected=verdict.rejected,
            token=verdict.token,
            kind=verdict.kind,
            committed=new,
            t_draft=t_draft,
            t_verify=t_verify,
            t_other=t_other + (time.perf_counter() - t0),
            discarded=verdict.accepted[len(new) :],
            margins=_margins(logits[[0] + [a + 1 for a in verdict.accepted[: len(new) - 1]]]),
        )
    )
    run.trace.t_trace += time.perf_counter() - t0
    clock.phase("record")


def greedy(logits: torch.Tensor) -> list[int]:
    """Each row's argmax (the first, on ties), over float32: the same index as over the model's
    dtype (widening is exact), and on bfloat16 CPU logits 3x cheaper (0.16 against 0.54 ms for a
    151936-token row, AVX512-BF16 EPYC)."""
    return logits.float().argmax(-1).tolist()


def _margins(rows: torch.Tensor) -> list[float]:
    """Top-1 minus top-2 logit of each row: how near a tie the target's choice was (0 on a tie).
    Two vectorised maxima instead of ``topk(2)``, which cost 0.3-0.6 ms a row there."""
    if rows.shape[-1] < 2:
        return [float("inf")] * rows.shape[0]
    x = rows.float()
    top = x.amax(-1, keepdim=True)
    at_top = x == top
    second = x.masked_fill(at_top, float("-inf")).amax(-1)
    margin = torch.where(at_top.sum(-1) > 1, torch.zeros_like(second), top[:, 0] - second)
    return [round(m, 6) for m in margin.tolist()]


def _pick(logits: torch.Tensor, sampling: SamplingConfig, noise: Noise, position: int) -> int:
    """The first token (at ``position``), by the rule every later token is picked by."""
    if sampling.greedy:
        return greedy(logits.view(1, -1))[0]
    p = probs(logits.view(1, -1), sampling)
    if sampling.rule == "coupled":
        return noise.choose(p, [position])[0]
    return sample(p[0], noise.generator)
