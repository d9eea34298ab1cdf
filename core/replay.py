"""Counterfactual replay: score any drafter and draft shape against ONE recorded target run.

Record once (``record``): the run's output tokens plus one teacher-forced target forward over
``prompt + output`` giving, at every output position, the target's argmax, its top-2 margin,
its last hidden state (for drafters with ``needs_hidden``) and the prefill's hidden states and
input embeddings (what ``DraftContext`` gets). Then ``replay(rec, drafter, spec)`` runs the
engine's own step loop (``core.engine.steps``: propose, accept, cut, commit, record) against
``RecordedTarget``, which never runs the target: the row predicting output index j is a point
mass on the recorded token there, so the engine's acceptance accepts a node iff its token is the
recorded one (the first mismatch gives the correction, a leaf the bonus), and its hidden state
is the recorded one (the engine's ``hidden[kept]``, kept = [root] + accepted path). At T=0 the predicted tau therefore equals the
tau of a real speculative run on the same input, unless the target's argmax is a near-tie
that a different verify batch flips (float rounding): ``rec.near_ties`` lists the positions
whose top-2 margin is small, and ``rec.mismatches`` those where the teacher-forced argmax
already differs from the recorded output.

Shapes: chain gamma, static tree branching, dynamic tree depth/top_k/budget. ``auto`` (the
adaptive chain) is not replayable: its lengths depend on measured timings of the live run.

Costs: a step's target forward is priced with the measured cost curve (``core.costs``:
``target_curve`` at 1 + drafted tokens), the drafter's own time is measured in the replay
itself (propose + commit wall time; it runs for real), prefill from the recording. Predicted
tokens/s and speedup over plain decoding follow (plain = prefill + (n-1) one-token forwards).

T > 0: the recorded path is one sample; ``replay`` then also returns ``expected_accept``:
along each step's first-child chain, sum over depths of the product of min(1, p/q) with p
the target's processed probability at that recorded position and q the draft's. It is an
estimate (the drafts below the recorded path are not the ones a real run would see).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .drafters.base import DraftContext, DraftSpec
from .sampling import Noise, SamplingConfig, probs
from .trace import Trace
from .visual import teacher_forced

NEAR_TIE = 1e-3  # logits: a top-2 margin below this may flip between verify batches


@dataclass
class Recording:
    target: object
    prompt: str
    image: object
    enc: object
    output: list[int]  # the recorded run's tokens
    argmax: list[int]  # teacher-forced argmax at output index i (len(output) + 1)
    margin: list[float]  # top-1 minus top-2 logit there
    logits: torch.Tensor  # (len(output) + 1, V) float32
    hidden: torch.Tensor | None  # (len(output), H): hidden state at output token j
    prefill_hidden: torch.Tensor | None
    embeds: torch.Tensor | None
    t_prefill: float = 0.0  # seconds of the recording's prefill (prices the replay's)
    stop_reason: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def mismatches(self) -> list[dict]:
        """Output indices where the teacher-forced argmax differs from the recorded token."""
        return [
            {"index": i, "recorded": t, "argmax": self.argmax[i], "margin": round(self.margin[i], 6)}
            for i, t in enumerate(self.output)
            if self.argmax[i] != t
        ]

    def near_ties(self, tol: float = NEAR_TIE) -> list[dict]:
        return [{"index": i, "margin": round(m, 6)} for i, m in enumerate(self.margin[: len(self.output)]) if m < tol]


@torch.inference_mode()
def record(
    target,
    prompt: str,
    image=None,
    output: list[int] | None = None,
    max_new_tokens: int = 64,
    want_hidden: bool = True,
    stop_reason: str | None = None,
    meta: dict | None = None,
) -> Recording:
    """Record a target run. ``output``: a finished run's tokens (e.g. ``trace.output``); None runs
    plain greedy decoding first (one real target run)."""
    if output is None:
        from .engine import generate

        tr = generate(target, prompt, image, max_new_tokens=max_new_tokens, detail=False)
        output, stop_reason = list(tr.output), tr.stop_reason
    enc = target.encode(prompt, image)
    timings: dict = {}
    logits, hidden, pre_hidden, embeds = teacher_forced(target, enc, list(output), want_hidden, timings)
    top = torch.topk(logits, 2, dim=-1)
    if stop_reason is None:
        stop_reason = "eos" if output and output[-1] in target.eos_ids else "length"
    return Recording(
        target,
        prompt,
        image,
        enc,
        list(output),
        top.indices[:, 0].tolist(),
        (top.values[:, 0] - top.values[:, 1]).tolist(),
        logits,
        hidden,
        pre_hidden,
        embeds,
        timings["prefill_s"],
        stop_reason,
        dict(meta or {}),
    )


class _Cache:
    """The recorded target's KV session: only its length (the next position) is real."""

    def __init__(self, length: int):
        self.length = length


class RecordedTarget:
    """The target of a recording, for ``core.engine.step``: the row of a forward that predicts
    output index j is a point mass on the recorded token there (past the output: the
    teacher-forced argmax), and its hidden state the recorded one, so the engine's own acceptance,
    cut and commit run without the target. Rows off the recorded path are never read by an
    acceptance that follows the recording (a node is accepted only where it equals it)."""

    def __init__(self, rec: Recording):
        self.rec, self.eos_ids, self.device = rec, rec.target.eos_ids, rec.target.device
        self.prompt_len, self.size = rec.enc.length, rec.logits.shape[-1]

    def _truth(self, j: int) -> int:
        rec = self.rec
        if j < len(rec.output):
            return rec.output[j]
        return rec.argmax[min(j, len(rec.argmax) - 1)]  # past the budget: cut by the engine

    def forward(self, sess, fed, positions, mask=None, want_hidden: bool = False, rows=None):
        index = (torch.as_tensor(positions).view(-1) - self.prompt_len + 1).tolist()  # output index each row predicts
        logits = torch.full((len(fed), self.size), float("-inf"))
        logits[torch.arange(len(fed)), torch.tensor([self._truth(j) for j in index])] = 0.0
        hidden = None
        if want_hidden:
            if self.rec.hidden is None:
                raise ValueError("this drafter needs the target's hidden states: record with want_hidden")
            last = self.rec.hidden.shape[0] - 1
            hidden = self.rec.hidden[[min(j - 1, last) for j in index]]
        return logits, hidden

    def keep(self, sess, base: int, kept: list[int]) -> None:
        sess.length = base + len(kept)


@torch.inference_mode()
def replay(
    rec: Recording, drafter, spec: DraftSpec, sampling: SamplingConfig = SamplingConfig(), max_new_tokens: int | None = None
) -> dict:
    """Drive ``drafter`` over the recorded run with the engine's own step (``core.engine.steps``)
    against ``RecordedTarget`` (see module docstring). Returns tau, steps, accepted per step,
    acceptance by depth (``Trace.summary``), the drafter's measured seconds and the per-step verify
    sizes (for pricing), plus ``expected_accept`` at T > 0. ``max_new_tokens`` is at most the
    recording's length."""
    from .engine import Decoding, steps

    if spec.adaptive:
        raise ValueError(
            "the adaptive chain ('auto') depends on live timings and cannot be replayed; replay fixed shapes (chain / tree / dynamic)"
        )
    n_rec = len(rec.output)
    max_new_tokens = n_rec if max_new_tokens is None else min(max_new_tokens, n_rec)
    target = RecordedTarget(rec)
    gen = torch.Generator(device=target.device).manual_seed(int(sampling.seed or 0))
    root = rec.output[0]
    out = [root]
    trace = Trace(meta={"replay": True})
    run = Decoding(
        target,
        drafter,
        spec,
        sampling,
        Noise(int(sampling.seed or 0), gen),
        None,
        _Cache(target.prompt_len),
        out,
        trace,
        max_new_tokens,
        detail=False,
    )
    stop = "eos" if root in target.eos_ids else ("length" if max_new_tokens <= 1 else "")
    t_begin = 0.0
    if not stop:
        t0 = time.perf_counter()
        drafter.begin(
            DraftContext(
                target=rec.target,
                prompt_ids=rec.enc.input_ids[0].tolist(),
                prompt=rec.prompt,
                image=rec.image,
                encoded=rec.enc,
                target_hidden=rec.prefill_hidden,
                tokens=list(out),
                target_embeds=rec.embeds,
                policy=None,
            )
        )
        t_begin = time.perf_counter() - t0
        stop = steps(run, root)
    trace.output, trace.stop_reason = out, stop
    summary = trace.summary()
    res = {
        "tokens": len(out),
        "steps": len(trace.steps),
        "target_forwards": summary["target_forwards"],
        "tau": summary["tau"],
        "accepted_per_step": summary["accepted_per_step"],
        "acceptance_by_depth": summary["acceptance_by_depth"],
        "verify_sizes": [1 + len(st.tokens) for st in trace.steps],
        "draft_s": [st.t_draft for st in trace.steps],
        "draft_s_total": t_begin + sum(st.t_draft for st in trace.steps),
        "matches_recording": out == rec.output[: len(out)],
        "stop_reason": stop,
        "output": out,
    }
    if not sampling.greedy:
        rows_p = probs(rec.logits, sampling)
        expected, k = [], 1  # k: the output index the step's root predicts
        for st in trace.steps:
            if st.tokens:
                expected.append(_expected_chain(st, rows_p, k))
            k += len(st.committed)
        res["expected_accept"] = {
            "per_step": round(sum(expected) / len(expected), 4) if expected else 0.0,
            "tau_estimate": round(1 + sum(expected) / len(expected), 4) if expected else 1.0,
            "note": "estimate along the recorded path (T > 0)",
        }
    return res


def _expected_chain(st, rows_p: torch.Tensor, k: int) -> float:
    """Expected accepted tokens along a step's first-child chain: sum_d prod_{i<=d} min(1, p_i / q_i),
    p_i the target's probability of the node's token at output index k + depth - 1."""
    first: dict[int, int] = {}
    for i, par in enumerate(st.parents):
        first.setdefault(par, i)
    node, total, prod = -1, 0.0, 1.0
    while node in first:
        c = first[node]
        j = k + st.depths[c] - 1
        if j >= rows_p.shape[0]:
            break
        p = float(rows_p[j, st.tokens[c]]) if st.tokens[c] < rows_p.shape[1] else 0.0
        prod *= min(1.0, p / max(st.q[c], 1e-12))
        total += prod
        node = c
    return total


def price(res: dict, curve: dict[int, float], t_prefill: float) -> dict:
    """Predicted seconds, tokens/s and speedup of a replayed run from the measured target cost
    curve (seconds of one forward of n tokens, ``core.costs``) and the replay's drafter time."""
    from .costs import CostModel

    cm = CostModel(curve)
    t_target = sum(cm.target(v) for v in res["verify_sizes"])
    spec_s = t_prefill + t_target + res["draft_s_total"]
    n = res["tokens"]
    ar_s = t_prefill + max(0, n - 1) * cm.target(1)
    return {
        "predicted_s": round(spec_s, 6),
        "predicted_tok_s": round(n / spec_s, 3) if spec_s > 0 else 0.0,
        "ar_s": round(ar_s, 6),
        "predicted_speedup": round(ar_s / spec_s, 4) if spec_s > 0 else 0.0,
        "target_s": round(t_target, 6),
        "draft_s": round(res["draft_s_total"], 6),
    }


# ---- shapes ------------------------------------------------------------------------------
def parse_shape(text: str) -> DraftSpec:
    """``chain:4`` | ``tree:3x2x1`` | ``dynamic:5/4/20`` (depth / top_k / budget)."""
    kind, _, arg = text.strip().partition(":")
    kind = kind.lower()
    try:
        if kind == "chain":
            return DraftSpec("chain", gamma=int(arg))
        if kind == "tree":
            return DraftSpec("tree", branching=tuple(int(b) for b in arg.lower().split("x")))
        if kind == "dynamic":
            d, k, b = (int(x) for x in arg.split("/"))
            return DraftSpec("dynamic", depth=d, top_k=k, budget=b)
    except ValueError as e:
        raise ValueError(f"bad shape {text!r}: {e}") from None
    if kind == "auto":
        raise ValueError("auto (the adaptive chain) cannot be replayed: its lengths depend on live timings")
    raise ValueError(f"bad shape {text!r}: use chain:G, tree:AxBxC or dynamic:DEPTH/TOPK/BUDGET")


def shape_label(spec: DraftSpec) -> str:
    if spec.strategy == "chain":
        return f"chain:{spec.gamma}"
    if spec.strategy == "tree":
        return "tree:" + "x".join(str(b) for b in spec.branching)
    return f"dynamic:{spec.depth}/{spec.top_k}/{spec.budget}"


def rank(
    rec: Recording,
    drafters: dict,
    shapes: list[DraftSpec],
    curve: dict[int, float] | None = None,
    sampling: SamplingConfig = SamplingConfig(),
) -> list[dict]:
    """Replay every drafter x shape; rows sorted by predicted speedup (tau when no curve)."""
    rows = []
    for dname, d in drafters.items():
        for spec in shapes:
            r = replay(rec, d, spec, sampling)
            row = {
                "drafter": dname,
                "shape": shape_label(spec),
                "tau": r["tau"],
                "accepted_per_step": r["accepted_per_step"],
                "steps": r["steps"],
                "matches_recording": r["matches_recording"],
            }
            if "expected_accept" in r:
                row["tau_estimate"] = r["expected_accept"]["tau_estimate"]
            if curve:
                row.update(price(r, curve, rec.t_prefill))
            rows.append(row)
    key = "predicted_speedup" if curve else ("tau" if sampling.greedy else "tau_estimate")
    return sorted(rows, key=lambda x: -x.get(key, 0.0))
