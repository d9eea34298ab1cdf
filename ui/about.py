"""The texts of the page: the header and the About tab."""

HEADER = """
<div class="ss-header">
  <div class="ss-title"><span class="ss-logo">◆</span> SpecScope
    <span class="ss-sub">speculative decoding for vision-language models, live</span></div>
  <p>A small <b>drafter</b> guesses the next tokens; the big <b>target</b> checks all the guesses in
  <b>one</b> forward pass, keeps the ones it agrees with and adds one of its own. Same answer, fewer slow
  steps.</p>
</div>
"""

ABOUT = """
### What you are looking at

**Speculative decoding** speeds up text generation without changing it. A cheap **drafter** proposes the next
few tokens (a *chain*, or a *tree* of alternatives); the expensive **target** model scores all of them in a single
forward pass, keeps the longest prefix it agrees with, and adds one token of its own. With greedy decoding
(temperature 0) the output is *identical* to what the target produces alone; with sampling, a rejection rule
keeps the output *distribution* identical.

**Colours** (the same everywhere):

| colour | meaning |
|---|---|
| <span class="ss-sw ss-sw-accepted"></span>&nbsp;green | accepted draft token (the target agreed) |
| <span class="ss-sw ss-sw-bonus"></span>&nbsp;blue | *bonus* token: the target's own token after a fully accepted draft |
| <span class="ss-sw ss-sw-correction"></span>&nbsp;orange | *correction*: the target's token in place of a rejected draft |
| <span class="ss-sw ss-sw-rejected"></span>&nbsp;red | rejected draft token (in the tree) |
| <span class="ss-sw ss-sw-discarded"></span>&nbsp;pale, struck through | *discarded*: the target agreed, but the answer had already ended (end of text or the length limit), so it is not kept and not counted as accepted |
| <span class="ss-sw ss-sw-unreached"></span>&nbsp;grey | drafted below a rejected token: never checked |
| <span class="ss-sw ss-sw-root"></span>&nbsp;slate | the root (last committed token) / the first token from the prefill |

**Numbers**

* **τ, tokens per speculative step (incl. bonus, excl. prefill)**: the mean acceptance length of the papers: tokens committed per speculative step, the target's own token included, the first token (from the prefill) not counted. Plain decoding has τ = 1.
* **accepted draft tokens per step (excl. bonus)**: how many drafted tokens survive verification on average.
* **speedup**: tokens per second of speculative decoding / tokens per second of plain autoregressive decoding, same target, same input, both measured warm, without redrawing the page meanwhile. Plain and speculative runs alternate (3 of each by default); the median is shown with the range, e.g. *1.9× (1.7–2.2 over 3 runs)*. Below 1× speculative decoding was slower than plain decoding, and the page says so.
* **identical**: at temperature 0 the two outputs must match token for token (every target forward runs at a row count measured to compute each row bit for bit alike, so they do; where a machine has no such row count, a divergence is shown in amber when it is a rounding near-tie, in red when it is a real disagreement).

**Drafters** (drop-down on the Run tab)

* *n-gram*: copies continuations seen earlier in the prompt / answer; free, no model.
* *LayerSkip*: the target's own first layers + its output head (self-speculation).
* *MSD* (arXiv 2505.14260): an EAGLE-style one-layer head fed with the target's hidden states; image tokens are treated separately from text.
* *MASSV* (arXiv 2505.10526): a small LM given the target's vision encoder through a trained projector.
* *small VLM* (Spec-LLaVA, arXiv 2509.11961): a complete tiny VLM that reads the image itself; pairs well with a dynamic tree.
* *text LM*: a small text-only model that never sees the image.

**Draft shapes**: *chain* (γ tokens in a row), *static tree* (e.g. `3,2,2,1` children per depth) and *dynamic tree*
(EAGLE-2 style: expand the `top-k` best nodes at each of `depth` levels, keep the `budget` most likely nodes).

**Traces**: every run can be downloaded as JSON and re-opened in the *Trace viewer* without any model.

**Privacy**: images and prompts stay on the machine running this app; traces are written to its temp folder and
deleted after an hour.
"""
