"""The lm_head's screen (core/screen.py): greedy decoding's logits from an int8 copy of the head, each
row's first and second the full head's bit for bit. Its bound must hold, the tokens it keeps must be
the full head's, a row must not depend on the rows beside it, and decoding through it must give the
tokens and margins of the full head's decoding."""

from __future__ import annotations

import pytest
import torch

from core import adapters, rowdot, screen
from core.drafters import ModelDrafter, spec_for
from core.engine import _margins, generate
from tools.tiny import tiny_model_dir

V, K = 2048, 256


def _why() -> str | None:
    return screen.available(torch.zeros(8, 64, dtype=torch.bfloat16))


needs = pytest.mark.skipif(_why() is not None, reason=f"no screen here: {_why()}")


def test_the_screen_builds_where_the_cpu_can_run_it():
    """A C error must not pass for a machine without the screen: where the CPU has AVX512-BF16 (and so
    AVX512F) and rowdot builds, the screen builds too (red with a syntax error in core/screen.c)."""
    flags = rowdot._cpu_flags().split()
    if not ("avx512_bf16" in flags and rowdot.dpbf16() and rowdot.i8()):
        pytest.skip("no AVX512-BF16 here")
    assert _why() is None


@pytest.fixture(params=["native", "avx2"])
def isa(request, monkeypatch):
    """The screen's C as this CPU builds it, and its AVX2 code (the AVX2 kind's, built here without AVX512)."""
    monkeypatch.setenv("SPECSCOPE_SCREEN_AVX2", "1" if request.param == "avx2" else "0")
    if request.param == "avx2" and _why() is not None:
        pytest.skip(f"no AVX2 screen here: {_why()}")
    if request.param == "avx2" and not screen._own_i8():
        pytest.fail("SPECSCOPE_SCREEN_AVX2=1 did not take the AVX2 code")
    return request.param


@pytest.fixture(params=["bfloat16", "float32"])
def dtype(request):
    return getattr(torch, request.param)


def _needs_path(products: str) -> None:
    """Skip where the compiled forward's path cannot screen here: rowdot needs AVX512-BF16, the library's
    head outside the graph oneDNN's packed float32 product."""
    from core import kernels

    if products == "rowdot" and not rowdot.dpbf16():
        pytest.skip("the rowdot path needs AVX512-BF16")
    if products == "library" and not kernels.available("packed", torch.float32):
        pytest.skip("no oneDNN packed product here")


def near_ties(seed: int = 0, dtype=torch.bfloat16):
    """A head whose rows are one row plus perturbations below the int8 step (so the int8 copy cannot
    tell them apart), a few outlier columns, and rows x with outliers: the exact order of the tied
    logits is then the int8 copy's coin toss."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(K, generator=g) * 0.05
    base[:4] *= 20  # outlier columns set the rows' int8 scale
    w = base + torch.randn(V, K, generator=g) * 2e-4
    w[V // 2 :] = torch.randn(V // 2, K, generator=g) * 0.01  # and ordinary rows
    x = torch.randn(24, K, generator=g)
    x[:, 7] *= 30
    x[:, :4] = 0  # the outlier columns out of the logits: small logits, the int8 error what orders them
    x *= torch.sign(x @ base)[:, None]  # the tied rows' logits the largest of every row
    return w.to(dtype), x.to(dtype)


@needs
def test_the_bound_holds_for_every_logit(isa, dtype):
    """|int8 logit - full head's float32 sum| <= c |x|_1 for every token and row (red with c scaled
    down: the int8 copy misses by more than a tenth of the bound here)."""
    w, x = near_ties(dtype=dtype)
    sc = screen.Screen(w)
    assert sc.own == (isa == "avx2" or not rowdot.i8())
    a = sc.approx(x)
    full = rowdot.sums(x, w)  # the full head's float32 sums (for bfloat16, before its rounding)
    bound = sc.c[None, :] * x.float().abs().sum(-1, keepdim=True)
    miss = (a - full).abs()
    assert (miss <= bound).all(), float((miss / bound).max())
    assert float((miss / bound).max()) > 0.1  # a bound a tenth as wide would fail here


@needs
def test_the_screened_rows_first_and_second_are_the_full_heads(isa, dtype):
    """Argmax (the first on ties), margin and every kept token bit for bit the full head's, on near ties.
    Red with the bound zeroed: the int8 copy alone picks other tokens."""
    w, x = near_ties(dtype=dtype)
    full = rowdot.linear(x, w).float()  # the full head where a screen may run (core/compiled.py)
    if dtype == torch.bfloat16 and rowdot.dpbf16():  # the "rowdot" path's rowdot_il: the same numbers
        assert torch.equal(full, rowdot.linear(x, rowdot.pack(w), interleaved=True).float())
    sc = screen.Screen(w)
    got = sc.logits(x)
    assert got is not None and got.dtype == torch.float32
    assert got.argmax(-1).tolist() == full.argmax(-1).tolist()
    assert _margins(got) == _margins(full)
    assert max(sc.kept) > 2  # the ties made the screen keep several tokens a row
    for r in range(x.shape[0]):
        exact = got[r] == full[r]
        assert exact.sum() >= sc.kept[r]  # the kept ones at least
        top2 = full[r].topk(2).indices
        assert exact[top2].all()
    sc.c = torch.zeros_like(sc.c)  # no bound: the int8 copy's order decides
    bad = sc.logits(x)
    assert bad.argmax(-1).tolist() != full.argmax(-1).tolist() or _margins(bad) != _margins(full)


@needs
def test_a_row_is_screened_as_it_is_alone(isa, dtype):
    w, x = near_ties(1, dtype)
    sc = screen.Screen(w)
    block = sc.logits(x[:5])
    for r in range(5):
        assert torch.equal(sc.logits(x[r : r + 1])[0], block[r])


@needs
def test_rows_the_screen_cannot_take_are_left_to_the_full_head(isa):
    w, x = near_ties()
    sc = screen.Screen(w)
    bad = x[:2].clone()
    bad[1, 3] = float("inf")
    assert sc.logits(bad) is None  # not finite
    flat = torch.zeros(1, K, dtype=torch.bfloat16)
    flat[0, 0] = 1
    sc2 = screen.Screen(torch.ones(screen.CAP + 8, K, dtype=torch.bfloat16))
    assert sc2.logits(flat) is None  # every token tied: more than CAP could be first
    assert screen.available(w.half()) and screen.available(w[:, :100]) and screen.available(w, torch.zeros(V))


@needs
@pytest.mark.slow
@pytest.mark.parametrize("dtype, products", [("bfloat16", "rowdot"), ("float32", "library")])
def test_greedy_decoding_through_the_screen_is_the_full_heads(monkeypatch, dtype, products):
    """The tiny target on its compiled forward (bfloat16 on the rowdot path, float32 on the library's:
    the AVX2 kind's), the screen at every row count: greedy decoding without target probabilities
    gives the tokens, the first margin and every step's margins of the same decoding through the
    screen's full head (rowdot's numbers: the screen made to give up on every row), plain and
    speculative alike, on a head of near ties. On the rowdot path that full head is the one sessions
    with target probabilities take too; on the library's those take oneDNN's (``CompiledDecoder._head``).
    Red with the screen's bound zeroed."""
    _needs_path(products)
    monkeypatch.setenv("SPECSCOPE_COMPILE", "auto")
    monkeypatch.setenv("SPECSCOPE_COMPILED_PRODUCTS", products)
    monkeypatch.setenv("SPECSCOPE_HEAD_SCREEN", "on")
    tgt = adapters.load(tiny_model_dir("qwen2"), dtype=dtype)
    head = tgt.model.lm_head.weight  # made all near ties (before the compile freezes it): a screen
    with torch.no_grad():  # that trusted the int8 copy's order would pick other tokens
        g = torch.Generator().manual_seed(0)
        base = torch.randn(head.shape[1], generator=g)
        head.copy_(base * head.float().abs().mean() + head.float() * 0.01)
    fast = tgt.compiled
    assert fast is not None and fast.warm(), fast and fast.failed
    assert fast.screen is not None and 1 in fast.screen_rows, fast.head_why
    tgt.use_compiled = True
    calls = []
    real = fast.screen.logits
    monkeypatch.setattr(fast.screen, "logits", lambda x: calls.append(x.shape[0]) or real(x))
    drafter = ModelDrafter(tgt.truncated(1), "first layer")
    prompt = "Describe the picture in a few words."
    plain = None
    for d, strategy in ((None, "chain"), (drafter, "chain"), (drafter, "tree")):
        n = len(calls)
        detail = generate(tgt, prompt, None, d, spec_for(strategy), max_new_tokens=24, detail=True)
        assert len(calls) == n  # target probabilities asked: the full head
        with monkeypatch.context() as m:  # the screen gives up on every row: its full head
            m.setattr(fast.screen, "logits", lambda x: None)
            full = generate(tgt, prompt, None, d, spec_for(strategy), max_new_tokens=24, detail=False)
        got = generate(tgt, prompt, None, d, spec_for(strategy), max_new_tokens=24, detail=False)
        assert len(calls) > n  # the screen served this run
        assert got.output == full.output, strategy
        assert [s.margins for s in got.steps] == [s.margins for s in full.steps]
        assert got.meta["head_screened"] and not detail.meta["head_screened"]
        plain = plain or got.output
        assert got.output == plain, strategy  # speculative decoding is plain decoding through the screen
        if products == "rowdot":
            assert detail.output == got.output


def test_the_bench_says_where_the_head_was_screened():
    from tools.bench.report import _forward, past_prompt

    f = {"target": "compiled", "compile_s": 40, "prefill": "eager", "head": {"screen_rows": [1, 2, 3], "seconds": {}, "why_not": None}}
    assert "greedy steps of 1, 2, 3 rows screen the lm_head" in _forward({"forward": f})
    f["head"] = {"screen_rows": [], "why_not": "the full head measured cheaper at every row count"}
    assert "the full lm_head (the full head measured cheaper" in _forward({"forward": f})
    b = {"bytes_per_step": 3_087_000_000, "bound_tok_s": 30.0, "bytes_per_step_screened": 2_853_000_000}
    line = past_prompt({"step_cost_ar_ms": 40.0}, b)
    assert "Its step reads 2.85 GB" in line
    del b["bytes_per_step_screened"]
    assert "reads" not in past_prompt({"step_cost_ar_ms": 40.0}, b)


@needs
def test_a_screen_that_fails_leaves_the_full_head(monkeypatch):
    """Settling the screen is never fatal to the compiled forward: the full head serves and says why
    (red with the guard in ``CompiledDecoder.warm`` removed: the forward is then marked failed). On the
    path this CPU has: bfloat16 on rowdot (AVX512-BF16), else float32 on the library's (the AVX2 kind)."""
    dtype, products = ("bfloat16", "rowdot") if rowdot.dpbf16() else ("float32", "library")
    _needs_path(products)
    monkeypatch.setenv("SPECSCOPE_COMPILE", "auto")
    monkeypatch.setenv("SPECSCOPE_COMPILED_PRODUCTS", products)

    def broken(*a, **k):
        raise MemoryError("no room for the int8 copy")

    monkeypatch.setattr(screen, "Screen", broken)
    tgt = adapters.load(tiny_model_dir("qwen2"), dtype=dtype)
    fast = tgt.compiled
    assert fast.warm() and fast.ready and not fast.failed
    assert fast.screen is None and not fast.screen_rows and "MemoryError: no room" in fast.head_why
