"""How long to draft, step by step: the measured cost model against the drafter's confidence.

A chain of L drafted tokens commits 1 + P_1 + ... + P_L tokens on average, where P_i is the chance
that the first i drafted tokens are all accepted, and costs  draft(L) + target(L + 1) + other
seconds (``core.costs``). The policy picks the L with the most tokens per second:

* before drafting, optimistically: P_i = a^i with a the calibrated acceptance of a confident
  draft (q >= 0.9). When even that chain would not pay (L = 0), the drafter is not run at all and
  the step is a plain target step, apart from rare exploration steps that keep the statistics
  fresh; otherwise the drafter drafts and its confidence decides how far;
* while drafting, after each drafted token, from that token's draft probability q through a
  calibration learned online (later tokens forecast from the last one's and the recent rate) (P(accepted | q), per bin of q, prior: q itself): a confident draft
  extends the chain, an unsure one ends it (like transformers' ``assistant_confidence_threshold``
  or SpecDec++, but the threshold is where the measured costs say a token stops paying);
* after drafting, tokens that are not worth their share of the verify are dropped (greedy and
  other deterministic proposals only: see ``trim``).

Every decision uses only the draft (its tokens and probabilities) and the past, never the target's
verdict on this step, so the output stays lossless: the target's greedy output at T = 0 and its
distribution at T > 0 (drafted tokens kept or dropped by a rule that does not look at the target
leave rejection sampling exact).
"""

from __future__ import annotations

from .costs import CostModel, target_curve
from .tree import DraftTree

EDGES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0001)
PRIOR = 2.0  # pseudo-observations per bin (at the bin's mid-point) and for the rate
DECAY = 0.99  # calibration: older observations fade (a window of ~100 drafted tokens)
RATE_DECAY = 0.95  # the recent acceptance rate: a window of ~20 tried tokens, because acceptance
# changes with the text (a code block, then prose) faster than the calibration
EXPLORE = 0.05  # share of time a drafter that does not pay may still spend being tried


class AcceptanceStats:
    """P(a drafted token is accepted | its parent was, its draft probability q), learned online."""

    def __init__(self):
        mids = [(a + min(b, 1.0)) / 2 for a, b in zip(EDGES, EDGES[1:])]
        self.n = [PRIOR] * len(mids)
        self.k = [PRIOR * m for m in mids]
        self.rate_n, self.rate_k = PRIOR, PRIOR * 0.5

    @staticmethod
    def _bin(q: float) -> int:
        return next(i for i, e in enumerate(EDGES[1:]) if q < e)

    def p(self, q: float) -> float:
        b = self._bin(min(max(q, 0.0), 1.0))
        return self.k[b] / self.n[b]

    def rate(self) -> float:
        return self.rate_k / self.rate_n

    def best(self) -> float:
        """The calibrated acceptance of a confident draft (q >= 0.9): what a chain can hope for."""
        return max(self.k[b] / self.n[b] for b in range(self._bin(0.9), len(self.n)))

    def observe(self, q: float, ok: bool) -> None:
        b = self._bin(min(max(q, 0.0), 1.0))
        self.n = [x * DECAY for x in self.n]
        self.k = [x * DECAY for x in self.k]
        self.n[b] += 1
        self.k[b] += float(ok)
        self.rate_n = self.rate_n * RATE_DECAY + 1
        self.rate_k = self.rate_k * RATE_DECAY + float(ok)

    def to_json(self) -> dict:
        return {
            "rate": round(self.rate(), 4),
            "calibration": {f"{a:g}-{min(b, 1):g}": round(k / n, 3) for a, b, n, k in zip(EDGES, EDGES[1:], self.n, self.k)},
        }


class AutoPolicy:
    """Chooses each step's chain length from ``costs`` (seconds) and ``stats`` (acceptance)."""

    @classmethod
    def measured(cls, target) -> AutoPolicy:
        """A fresh policy from the target's measured cost curve (``costs.target_curve``)."""
        return cls(CostModel(target_curve(target)))

    def __init__(self, costs: CostModel, stats: AcceptanceStats | None = None):
        self.costs = costs
        self.stats = stats or AcceptanceStats()
        self.skipped = 0.0  # target seconds of plain steps since the drafter last ran
        self.exploring = True  # a fresh policy drafts once to see what the drafter costs

    def plan(self, qs: list[float], cap: int) -> int:
        """The chain length L in [0, cap] with the most expected tokens per second, given the draft
        probabilities ``qs`` of the tokens drafted so far. Tokens not drafted yet are forecast from
        the last one's calibrated confidence and the recent rate; before the first, optimistically
        (a confident draft's calibrated acceptance): whether a chain could pay at all."""
        c = self.costs
        drafted = len(qs)
        a = (self.stats.p(qs[-1]) + self.stats.rate()) / 2 if qs else self.stats.best()
        best_len, best_rate = 0, 1.0 / (c.draft(drafted) + c.target(1) + c.other)
        tokens, p = 1.0, 1.0
        for n in range(1, cap + 1):
            p *= self.stats.p(qs[n - 1]) if n <= drafted else a
            tokens += p
            t = c.draft(max(n, drafted)) + c.target(n + 1) + c.other
            if tokens / t > best_rate:
                best_len, best_rate = n, tokens / t
        return best_len

    # ---- the engine's and the tree builder's questions ----------------------------------
    def should_draft(self, cap: int) -> bool:
        """Run the drafter this step? No when even its best chain would not pay, except for an
        exploration step once the time it would cost is EXPLORE of the time skipped since."""
        if self.exploring or self.plan([], cap) > 0:
            return True
        c = self.costs
        probe = c.draft(2) + c.target(3) - c.target(1)
        if self.skipped * EXPLORE >= probe:
            self.skipped, self.exploring = 0.0, True
            return True
        return False

    def keep_drafting(self, tree: DraftTree, cap: int) -> bool:
        """After drafting ``tree`` (a chain): is one more draft forward worth it? (An exploration
        step drafts two tokens and verifies them whatever the estimates say.)"""
        if self.exploring:
            return len(tree) < min(2, cap)
        return self.plan(tree.q_tok, cap) > len(tree)

    def trim(self, tree: DraftTree) -> DraftTree:
        """The chain cut to the length worth verifying (all of it, mostly). Only for deterministic
        proposals (greedy drafts, n-gram lookup): a token SAMPLED from q and then dropped for its
        own low q would make the kept tokens' proposal q restricted to likely tokens, while
        acceptance divides by q: biased (the sampling test catches it). Sampled chains are cut
        only by ``keep_drafting``, before the next token is drawn: a stopping rule, lossless."""
        if self.exploring or tree.q:
            return tree
        n = self.plan(tree.q_tok, len(tree))
        return tree if n == len(tree) else tree.truncate(list(range(n)))

    def observe(
        self, tree: DraftTree, accepted: list[int], rejected: list[int], t_draft: float, t_verify: float, t_other: float, drafted: bool
    ) -> None:
        for i in accepted:
            self.stats.observe(tree.q_tok[i], True)
        for i in rejected:
            self.stats.observe(tree.q_tok[i], False)
        forwards = tree.forwards if drafted else None
        self.costs.observe(len(tree) + 1, t_verify, forwards, t_draft, t_other)
        self.skipped = 0.0 if drafted else self.skipped + t_verify
        if drafted:
            self.exploring = False

    def to_json(self) -> dict:
        return {"costs": self.costs.to_json(), "acceptance": self.stats.to_json()}
