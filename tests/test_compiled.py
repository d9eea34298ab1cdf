"""The compiled forward (core/compiled.py): the target's decode and verify blocks over a static KV
cache, compiled by inductor. It must compute what transformers computes (to rounding), keep
speculative decoding bit-identical to plain decoding on it, trees included (each row's keys
gathered into column order), and stand aside where it cannot serve (hooks, other families, off)."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from core import adapters, compiled
from core import rows as R
from core.api import warm
from core.drafters import ModelDrafter, spec_for
from core.engine import generate
from core.errors import InputError
from core.pairs import Pair
from tools.tiny import tiny_model_dir

pytestmark = pytest.mark.slow  # a minute or more: scheduled first (tests/conftest.py)

PROMPT = "Describe the picture in a few words."
N = 24
_loaded: dict = {}
# One compile per run (minutes on 2 cores): the real pair's family in the dtype this machine's users
# get (``--dtype auto``: bfloat16 where the CPU computes it natively, else float32);
# SPECSCOPE_TEST_COMPILED_DTYPE runs the module in the other one.
FAMILY = "qwen2"
TOL = {"float32": 1e-4, "bfloat16": 3e-2}  # compiled vs transformers' forward: rounding only


def dtype() -> str:
    from core.device import resolve_dtype

    return os.environ.get("SPECSCOPE_TEST_COMPILED_DTYPE") or resolve_dtype("auto")


def close(a, b):
    tol = TOL[dtype()]
    return torch.allclose(a.float(), b.float(), atol=tol, rtol=tol)


@pytest.fixture(autouse=True)
def _compile_on(monkeypatch):
    monkeypatch.setenv("SPECSCOPE_COMPILE", "auto")


def target():
    """The tiny text target on its compiled forward (compiled once per module run)."""
    key = (FAMILY, dtype())
    if key not in _loaded:
        tgt = adapters.load(tiny_model_dir(FAMILY), dtype=key[1])
        assert tgt.compiled is not None, compiled.eligible(tgt.model)
        assert tgt.compiled.warm(), tgt.compiled.failed
        tgt.use_compiled = True  # this module tests the path itself; settle_path's choice is tested below
        _loaded[key] = tgt
    return _loaded[key]


def decode(tgt, drafter, strategy):
    seen = []
    tr = generate(
        tgt,
        PROMPT,
        None,
        drafter,
        spec_for(strategy),
        max_new_tokens=N,
        on_phase=lambda name, s, **d: seen.append(d["logits"].float().clone()) if name == "verify" else None,
    )
    rows = []
    for st, lg in zip(tr.steps, seen):
        rows += [lg[r] for r in ([0] + [a + 1 for a in st.accepted])[: len(st.committed)]]
    return tr, rows


def test_speculative_is_plain_decoding_bit_for_bit_on_the_compiled_forward():
    tgt = target()
    assert tgt.path == "compiled"
    rows = R.row_set(tgt)
    assert rows.exact and rows.attention == "", rows  # measured on this forward, not the eager one's
    drafter = ModelDrafter(tgt.truncated(1), "first layer")
    ref, ref_rows = decode(tgt, None, "chain")
    assert len(ref.output) > 4 and tgt.path == "compiled"
    for strategy in ("auto", "chain", "tree", "dynamic"):
        tr, got = decode(tgt, drafter, strategy)
        assert tr.output == ref.output, strategy
        assert rows.trees or strategy in ("auto", "chain"), "trees not exact on the compiled forward"
        bad = [i for i, (a, b) in enumerate(zip(ref_rows, got)) if not torch.equal(a, b)]
        assert not bad, f"{strategy}: logits differ from plain decoding at tokens {bad[:5]}"


def test_the_compiled_forward_computes_what_transformers_computes():
    tgt = target()
    ids = torch.randint(0, tgt.vocab_size, (40,), generator=torch.Generator().manual_seed(1))
    tgt.use_compiled = False
    sess, _, _ = tgt.prefill(tgt.encode_ids(ids[:30]))
    ref, ref_h = tgt.forward(sess, ids[30:].tolist(), want_hidden=True)
    tgt.use_compiled = True
    sess, _, _ = tgt.prefill(tgt.encode_ids(ids[:30]))
    assert isinstance(sess.cache, compiled.StaticKV)
    got, got_h = tgt.forward(sess, ids[30:].tolist(), want_hidden=True)
    assert close(got, ref), (got.float() - ref.float()).abs().max()
    assert close(got_h, ref_h)  # the final, normed hidden state, as transformers'


def test_a_session_keeps_the_forward_it_was_asked_for():
    tgt = target()
    enc = tgt.encode_ids(torch.tensor([5, 6, 7]))
    # a hook of the prefill's own (want_hidden) never moves a compiled session to eager
    sess, _, _ = tgt.prefill(enc, want_hidden=True)
    assert sess.path == "compiled" and isinstance(sess.cache, compiled.StaticKV)
    sess, _, _ = tgt.prefill(enc, path="eager")
    assert sess.path == "eager" and not isinstance(sess.cache, compiled.StaticKV)


def test_the_cache_buffers_keep_only_their_capacity_symbolic():
    """Every dim the compiled graph sees as a symbol is an int its wrapper turns into a tensor and back,
    and a guard, on every call (345 a step for the 1.5B target before: docs/results.md, thirty-first
    session), so a cache buffer's heads and head dim are marked static, the fresh buffers and those a
    growing cache makes alike; only the capacity varies (red with ``_fixed`` left out of ``reserve``)."""
    fast = adapters.load(tiny_model_dir(FAMILY), dtype="float32").compiled  # the adapter's own (no second reservation)
    kv = fast.empty_kv(10)
    cap = kv.capacity
    kv.length = cap
    kv.reserve(1)  # grows: new buffers
    assert kv.capacity > cap
    for t in kv.keys + kv.values:
        assert getattr(t, "_dynamo_static_indices", set()) == {0, 2}


def test_tree_rows_see_their_keys_in_column_order():
    """A tree verify: the row behind each true node equals chunked (chain) decoding bit for bit,
    though its ancestors sit at scattered columns, siblings in between (what ``cols`` is for)."""
    tgt = target()
    rows = R.row_set(tgt)
    assert rows.trees, "the compiled forward's tree verifies differ from its chains"


def test_a_row_computes_alike_whatever_width_the_attention_reads(monkeypatch):
    """The compiled forward reads the cache rounded up to ``WIDTH`` slots, so one token is summed
    over one width in a plain step and over a wider one in a verify that crosses a step (where its
    exactness broke in the seventeenth session). The same block at five widths, end to end: the same
    bits (red where the columns past the cache are not masked at some width; the sums' order is
    checked at the real target's shapes in the next test, as the tiny model's small heads summed
    alike even as batched products)."""
    tgt = target()
    fast = tgt.compiled
    ids = torch.randint(0, tgt.vocab_size, (45,), generator=torch.Generator().manual_seed(5))
    sess, _, _ = tgt.prefill(tgt.encode_ids(ids[:40]))
    kv = sess.cache
    assert isinstance(kv, compiled.StaticKV)
    block, positions = ids[40:].tolist(), torch.arange(40, 45)
    got = {}
    for width in (128, 192, 256, 320, 384):  # 40 + 5 slots rounded up to each
        monkeypatch.setattr(compiled, "WIDTH", width)
        logits, hidden, _ = fast.forward(kv, block, positions, None)
        kv.length -= len(block)  # the same slots are written again by the next width
        got[width] = (logits.clone(), hidden.clone())
    for width in (192, 256, 320, 384):
        for a, b in zip(got[128], got[width]):
            bad = (a != b).any(-1).nonzero().view(-1).tolist()
            assert not bad, f"width {width}: rows {bad} differ from width 128"


def test_the_compiled_attention_sums_alike_over_every_width():
    """``compiled.attend`` compiled alone at the real 1.5B target's head shapes (2 KV heads, 6 query
    heads each, 128 dims): a row with 150 visible keys, read at several widths and in blocks of
    several sizes, gives the same bits. Red with the sum of probabilities x values as one batched
    product over all the keys (``torch.matmul``): there 256 keys summed otherwise than 192, 384 or
    640 (AVX512-BF16 EPYC)."""
    fn = torch.compile(compiled.attend, dynamic=True, fullgraph=True)
    g = torch.Generator().manual_seed(6)
    kv, heads, d, visible, block = 2, 6, 128, 150, compiled.BLOCK
    q0 = torch.randn(kv, 1, heads, d, generator=g)
    k0, v0 = torch.randn(kv, 1, visible, d, generator=g), torch.randn(kv, 1, visible, d, generator=g)
    got = {}
    for n in (1, 3, 8):
        for width in (192, 256, 384, 640):
            q = torch.randn(kv, n, heads, d, generator=g)
            k, v = torch.randn(kv, n, width, d, generator=g), torch.randn(kv, n, width, d, generator=g)
            q[:, :1], k[:, :1, :visible], v[:, :1, :visible] = q0, k0, v0
            bias = torch.zeros(n, width)
            bias[0, visible:] = torch.finfo(torch.float32).min
            blocks = width // block
            out = fn(q, k.view(kv, n, blocks, block, d), v.view(kv, n, blocks, block, d), bias.view(n, blocks, block), d**-0.5)
            got[(n, width)] = out[:, 0]
    ref = got[(1, 192)]
    bad = [key for key, out in got.items() if not torch.equal(out, ref)]
    assert not bad, f"(rows, width) summed otherwise than (1, 192): {bad}"


def test_keep_compacts_the_static_cache():
    kv = compiled.StaticKV([torch.arange(10.0).view(1, 10, 1)], [torch.arange(10.0).view(1, 10, 1) + 100], 10)
    compiled.CompiledDecoder.keep(kv, 4, [1, 3, 5])
    assert kv.length == 7
    assert kv.keys[0][0, :7, 0].tolist() == [0, 1, 2, 3, 5, 7, 9]
    assert kv.values[0][0, :7, 0].tolist() == [100, 101, 102, 103, 105, 107, 109]
    kv.reserve(600)  # grows, keeping what it holds
    assert kv.capacity >= 607 and kv.capacity % compiled.GROW == 0
    assert kv.keys[0][0, :7, 0].tolist() == [0, 1, 2, 3, 5, 7, 9]


def test_a_tapped_target_decodes_on_transformers_forward():
    tgt = target()
    assert tgt.path == "compiled"
    h = tgt.text_module().layers[0].register_forward_pre_hook(lambda *a: None)
    try:
        assert tgt.path == "eager"
        sess, _, _ = tgt.prefill(tgt.encode_ids(torch.tensor([1, 2, 3])))
        assert not isinstance(sess.cache, compiled.StaticKV)
    finally:
        h.remove()
    assert tgt.path == "compiled"


def test_an_eagle3_head_moves_its_target_to_transformers_forward_when_switched_off(monkeypatch):
    """``COMPILED_TAPS`` off: the head's taps are plain hooks, which the compiled forward (no
    modules) cannot serve, so its target decodes on transformers' forward."""
    from core.drafters import eagle3
    from core.drafters.eagle3 import Eagle3Drafter, new_head

    monkeypatch.setattr(eagle3, "COMPILED_TAPS", False)
    tgt = target()
    drafter = Eagle3Drafter(tgt, head=new_head(tgt, aux_layer_ids=[0, 1, 2], seed=3))
    try:
        assert tgt.path == "eager" and not tgt.readers
    finally:
        drafter.close()
    assert tgt.path == "compiled"


def test_an_eagle3_head_reads_the_compiled_forward_and_keeps_it():
    """An EAGLE-3 head's taps are hooks, which the compiled forward (no modules) never calls: the
    adapter hands them its residual stream instead, so the target keeps that forward; the head
    reads the same layers' states as on transformers' forward (to rounding), and speculative
    decoding with it stays plain decoding bit for bit."""
    from core.drafters import eagle3
    from core.drafters.eagle3 import Eagle3Drafter, new_head

    assert eagle3.COMPILED_TAPS  # the default
    tgt = target()
    drafter = Eagle3Drafter(tgt, head=new_head(tgt, aux_layer_ids=[0, 1, 2], seed=3))
    try:
        assert tgt.path == "compiled" and tgt.readers, "the head's taps moved the target off its compiled forward"
        ids = torch.randint(0, tgt.vocab_size, (40,), generator=torch.Generator().manual_seed(2))
        aux = {}
        for use in (False, True):
            tgt.use_compiled = use
            sess, _, _ = tgt.prefill(tgt.encode_ids(ids[:30]))
            assert isinstance(sess.cache, compiled.StaticKV) == use
            _, h = tgt.forward(sess, ids[30:].tolist(), want_hidden=True)
            aux[use] = drafter.taps.lookup(h[3:7].clone())
        assert close(aux[True], aux[False]), (aux[True].float() - aux[False].float()).abs().max()
        ref, ref_rows = decode(tgt, None, "chain")
        for strategy in ("auto", "chain", "tree"):
            tr, got = decode(tgt, drafter, strategy)
            assert tr.output == ref.output, strategy
            # the session itself ran on the compiled forward (a head's prefill reads the prompt's
            # hidden states through a hook of its own, which must not move the session to eager
            # while its row set was measured on the compiled forward)
            assert tr.meta["forward"] == "compiled", strategy
            bad = [i for i, (a, b) in enumerate(zip(ref_rows, got)) if not torch.equal(a, b)]
            assert not bad, f"{strategy}: logits differ from plain decoding at tokens {bad[:5]}"
    finally:
        drafter.close()
    assert not tgt.readers and tgt.path == "compiled"


def test_a_prompt_on_the_compiled_forward():
    """Where measured cheaper the prompt runs on the compiled forward too, in blocks (three here):
    the same logits, cache and hidden states as transformers' prefill (to rounding), the head's taps
    fed the whole prompt at once, and speculative decoding after it plain decoding bit for bit."""
    from core.drafters.eagle3 import Eagle3Drafter, new_head

    from core.adapters import base

    tgt = target()
    ids = torch.randint(0, tgt.vocab_size, (2 * base.PREFILL_CHUNK + 9,), generator=torch.Generator().manual_seed(4))
    enc = tgt.encode_ids(ids)
    got = {}
    try:
        for on in (False, True):
            tgt.compiled_prefill = on
            sess, logits, hidden = tgt.prefill(enc, want_hidden=True, all_logits=True)
            assert sess.prefill == ("compiled" if on else "eager") and isinstance(sess.cache, compiled.StaticKV)
            assert sess.length == sess.cache.length == enc.length
            assert logits.shape == (enc.length, tgt.vocab_size) and hidden.shape[0] == enc.length
            got[on] = (logits, hidden, sess.cache.keys[1][:, : enc.length], sess.cache.values[0][:, : enc.length])
        for a, b in zip(got[False], got[True]):
            assert close(a, b), (a.float() - b.float()).abs().max()
        drafter = Eagle3Drafter(tgt, head=new_head(tgt, aux_layer_ids=[0, 1, 2], seed=3))
        try:
            ref, ref_rows = decode(tgt, None, "chain")
            for strategy in ("auto", "tree"):
                tr, rows = decode(tgt, drafter, strategy)  # the head reads the prompt through the readers
                assert tr.meta["prefill"] == "compiled" and tr.output == ref.output, strategy
                bad = [i for i, (a, b) in enumerate(zip(ref_rows, rows)) if not torch.equal(a, b)]
                assert not bad, f"{strategy}: logits differ from plain decoding at tokens {bad[:5]}"
        finally:
            drafter.close()
    finally:
        tgt.compiled_prefill = False


def test_settle_path_takes_the_compiled_prefill_only_where_measured_cheaper(monkeypatch):
    tgt = adapters.load(tiny_model_dir("qwen2"), dtype="bfloat16")
    rows = R.RowSet((2, 3, 4, 8, 12, 16, 24), trees=True, seconds={2: 0.005})
    monkeypatch.setattr(compiled.CompiledDecoder, "warm", lambda self, kv_len=64: setattr(self, "compile_s", 1.0) or True)
    monkeypatch.setattr("core.adapters.base.row_set", lambda a, refresh=False: rows if a.path == "compiled" else R.STOCK)
    for cost, chosen in (({"eager": 2.0, "compiled": 1.0}, True), ({"eager": 1.0, "compiled": 2.0}, False)):
        monkeypatch.setattr("core.adapters.base._time_prefill", lambda a, enc, mode: cost[mode])
        tgt.use_compiled, tgt._compiled_rows, tgt.compiled_prefill = False, None, None
        assert tgt.settle_path() == "compiled"
        assert tgt.compiled_prefill is chosen and tgt.prefill_seconds == cost

    def broken(a, enc, mode):
        raise RuntimeError("no kernel for this shape")

    monkeypatch.setattr("core.adapters.base._time_prefill", broken)
    tgt.use_compiled, tgt._compiled_rows = False, None
    assert tgt.settle_path() == "compiled" and tgt.compiled_prefill is False  # the prompt stays eager
    assert "no kernel" in tgt.prefill_seconds["failed"]


def test_settle_path_takes_the_compiled_forward_only_where_it_is_exact_and_faster(monkeypatch):
    tgt = adapters.load(tiny_model_dir("qwen2"), dtype="bfloat16")
    monkeypatch.setattr("core.adapters.base._time_prefill", lambda a, enc, mode: 1.0)
    eager = R.RowSet((2, 3, 4, 8, 12, 16, 24), trees=True, seconds={2: 0.010})
    fast = {"rows": R.RowSet((2, 3, 4, 8, 12, 16, 24), trees=True, seconds={2: 0.005})}
    monkeypatch.setattr(compiled.CompiledDecoder, "warm", lambda self, kv_len=64: setattr(self, "compile_s", 1.0) or True)
    monkeypatch.setattr("core.adapters.base.row_set", lambda a, refresh=False: fast["rows"] if a.path == "compiled" else eager)
    assert tgt.settle_path() == "compiled"
    for worse in (
        R.RowSet((2, 3, 4, 8, 12, 16, 24), trees=True, seconds={2: 0.020}),  # slower
        R.RowSet((2, 3, 4, 8, 12, 16, 24), trees=False, seconds={2: 0.005}),  # trees not exact
        R.RowSet((2, 3, 4), trees=True, seconds={2: 0.005}),  # reaches less far
        R.STOCK,  # no exact group
    ):
        tgt.use_compiled, tgt._compiled_rows = False, None
        fast["rows"] = worse
        assert tgt.settle_path() == "eager", worse


def test_a_compiled_forward_that_lost_before_is_not_compiled_again(monkeypatch, tmp_path):
    """The verdict is kept per machine (the tuning file): a compiled forward whose row set lost to
    the eager one in an earlier process is not compiled again (minutes on a 1.5B target: the AVX512-BF16
    EPYC's compiled group split at a width step, seventeenth session); one that won still compiles."""
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))  # its made-up sets stay here
    monkeypatch.setattr(R, "_sets", {})
    tgt = adapters.load(tiny_model_dir("qwen2"), dtype="bfloat16")
    eager = R.RowSet((2, 3, 4, 8, 12, 16, 24), trees=True, seconds={2: 0.010})
    monkeypatch.setattr("core.adapters.base.row_set", lambda a, refresh=False: eager)
    monkeypatch.setattr(compiled.CompiledDecoder, "warm", lambda self, kv_len=64: pytest.fail("compiled again"))
    R._store(R._key(tgt, "compiled"), R.RowSet((24, 32, 48), trees=True, seconds={24: 0.030}))  # lost: its 24-row plain steps cost more
    assert tgt.settle_path() == "eager" and tgt.settle_path(wait=False) == "eager"
    assert tgt.compiled.reserved == 0  # its memory promise given back
    tgt2 = adapters.load(tiny_model_dir("qwen2"), dtype="bfloat16")
    R._store(R._key(tgt2, "compiled"), R.RowSet((2, 3, 4, 8, 12, 16, 24), trees=True, seconds={2: 0.005}))  # won
    with pytest.raises(pytest.fail.Exception, match="compiled again"):
        tgt2.settle_path()


def _gated_warm(gate, warmed: list):
    """A stand-in for ``CompiledDecoder.warm``: returns at once when compiled (as warm does), else
    records the thread compiling and "compiles" once ``gate`` opens."""

    def warm(self, kv_len=64):
        if self.ready:
            return True
        warmed.append(threading.current_thread().name)
        gate.wait(30)
        self.compile_s = 1.0
        return True

    return warm


def _recorded_rows(seen: list):
    """A stand-in for ``row_set``: records (thread, path) and finds the compiled forward exact and faster."""

    def rows(a, refresh=False):
        seen.append((threading.current_thread().name, a.path))
        return R.RowSet((2, 3, 4, 8, 12, 16, 24), trees=True, seconds={2: 0.005 if a.path == "compiled" else 0.01})

    return rows


def test_in_the_background_the_eager_forward_serves_until_a_later_settle(monkeypatch):
    tgt = adapters.load(tiny_model_dir("qwen2"), dtype="bfloat16")
    gate = threading.Event()
    seen = []
    monkeypatch.setattr(compiled.CompiledDecoder, "warm", _gated_warm(gate, []))
    monkeypatch.setattr("core.adapters.base.row_set", _recorded_rows(seen))
    monkeypatch.setattr("core.adapters.base._time_prefill", lambda a, enc, mode: 1.0)
    assert tgt.settle_path(wait=False) == "eager"  # compiling: the eager forward serves
    assert tgt.path == "eager"
    gate.set()
    tgt.compiled._thread.join(30)
    assert ("specscope-compile", "compiled") in seen  # measured in its own thread, on its forward
    assert tgt.path == "eager"  # no switch until a run boundary
    assert tgt.settle_path(wait=False) == "compiled"


def test_a_settle_that_must_wait_joins_the_compile_running_in_the_background(monkeypatch):
    """``settle_path(wait=True)`` while a background compile (and its measurement) runs waits for it:
    one compile and one measurement, never a second beside the first (minutes each on a real target;
    red where the waiting settle compiles and measures again itself). The same for a drafter."""
    monkeypatch.setattr("core.adapters.base._time_prefill", lambda a, enc, mode: 1.0)
    for role in ("target", "drafter"):
        lm = adapters.load(tiny_model_dir("qwen2"), dtype="bfloat16", role=role)
        gate, warmed, measured = threading.Event(), [], []

        def timed(self, mode):
            measured.append((threading.current_thread().name, mode))
            return {"eager": 2.0, "compiled": 1.0}[mode]

        monkeypatch.setattr(compiled.CompiledDecoder, "warm", _gated_warm(gate, warmed))
        monkeypatch.setattr("core.adapters.base.row_set", _recorded_rows(measured))
        monkeypatch.setattr("core.adapters.base.measured", lambda *a, **k: None)
        monkeypatch.setattr("core.adapters.base.tuned", lambda *a, **k: None)
        monkeypatch.setattr("core.adapters.base.update_tuning", lambda *a, **k: None)
        monkeypatch.setattr(adapters.HFAdapter, "_time_draft", timed)
        assert lm.settle_path(wait=False) == "eager"
        threading.Timer(0.3, gate.set).start()
        assert lm.settle_path(wait=True) == "compiled", role
        assert warmed == ["specscope-compile"], role  # compiled once, in the background thread
        assert {t for t, path in measured if path == "compiled"} == {"specscope-compile"}, role  # measured there only


def test_a_drafters_compiled_forward_may_round_its_weights_and_speculative_stays_plain(monkeypatch, tmp_path):
    """A model drafter's compiled forward (``CompiledDecoder(lossy=True)``) may run its products on int8
    copies of its weights (``rowdot_i8``: half the bytes of bfloat16), a target's never (red with the
    rounding allowed to a target). Its logits are the model's to the rounding; as a drafter it proposes
    on it, and speculative decoding stays plain decoding for every strategy; ``api.warm`` settles its
    forward by timing both (red with the drafter's settle skipped: it stays eager)."""
    from core import rowdot

    if not (rowdot.available() and rowdot.i8()):
        pytest.skip("rowdot_i8: not built here (no AVX512F, or no compiler)")
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    monkeypatch.setenv("SPECSCOPE_COMPILED_PRODUCTS", "i8")
    assert adapters.load(tiny_model_dir(FAMILY), dtype="float32").compiled.products == "library"  # a target
    lm = adapters.load(tiny_model_dir(FAMILY), dtype="float32", role="drafter")
    assert lm.compiled.lossy and lm.compiled.products == "i8"
    assert lm.compiled.warm(), lm.compiled.failed
    ids = torch.randint(0, lm.vocab_size, (40,), generator=torch.Generator().manual_seed(2))
    sess, _, _ = lm.prefill(lm.encode_ids(ids[:30]))
    ref, _ = lm.forward(sess, ids[30:].tolist())
    lm.use_compiled = True
    sess, _, _ = lm.prefill(lm.encode_ids(ids[:30]))
    assert isinstance(sess.cache, compiled.StaticKV)
    got, _ = lm.forward(sess, ids[30:].tolist())
    assert not torch.equal(got, ref) and torch.allclose(got, ref, atol=0.05, rtol=0.05)  # rounded weights
    drafter = ModelDrafter(lm, "tiny, int8")
    tgt = target()
    plain, _ = decode(tgt, None, "chain")
    for strategy in ("chain", "tree", "auto"):
        tr, _ = decode(tgt, drafter, strategy)
        assert tr.output == plain.output, strategy
        assert drafter.sess.path == "compiled" and sum(len(st.accepted) for st in tr.steps) > 0, strategy
    lm.use_compiled = False
    warm(Pair(tgt, drafter, "tiny", "tiny int8"), PROMPT, tokens=2, force=True)
    assert set(lm.draft_seconds) == {"eager", "compiled"}, lm.compiled.failed  # both timed, here
    assert lm.path == ("compiled" if lm.draft_seconds["compiled"] < lm.draft_seconds["eager"] else "eager")


def test_a_drafters_forward_is_the_one_measured_cheaper_and_a_loss_is_kept(monkeypatch, tmp_path):
    """A drafter's forward is chosen by its speed alone (``HFAdapter._settle_draft``): its numbers never
    reach the output, so no row set is measured (red where it is); the compiled one where its draft
    forwards measured cheaper, the eager one elsewhere; a loss is kept per machine, and a later
    process compiles nothing (red with the verdict not kept)."""
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    monkeypatch.setattr(compiled.CompiledDecoder, "warm", lambda self, kv_len=64: setattr(self, "compile_s", 1.0) or True)
    monkeypatch.setattr("core.adapters.base._time_prefill", lambda a, enc, mode: 1.0)
    monkeypatch.setattr("core.adapters.base.row_set", lambda *a, **k: pytest.fail("a drafter's row set measured"))
    cost = {"eager": 2.0, "compiled": 1.0}
    monkeypatch.setattr(adapters.HFAdapter, "_time_draft", lambda self, mode: cost[mode])
    lm = adapters.load(tiny_model_dir("qwen2"), dtype="float32", role="drafter")
    assert lm.settle_path() == "compiled" and lm.draft_seconds == cost
    (tmp_path / "tuning.json").unlink()
    cost.update(eager=1.0, compiled=2.0)
    lm = adapters.load(tiny_model_dir("qwen2"), dtype="float32", role="drafter")
    assert lm.settle_path() == "eager" and lm.draft_seconds == cost
    monkeypatch.setattr(compiled.CompiledDecoder, "warm", lambda self, kv_len=64: pytest.fail("compiled again"))
    monkeypatch.setattr(adapters.HFAdapter, "_time_draft", lambda self, mode: pytest.fail("timed again"))
    lm = adapters.load(tiny_model_dir("qwen2"), dtype="float32", role="drafter")
    assert lm.settle_path() == "eager" and lm.settle_path(wait=False) == "eager"
    assert lm.compiled.reserved == 0  # its memory promise given back


def test_no_compiled_forward_where_it_cannot_serve(monkeypatch):
    assert adapters.load(tiny_model_dir("qwen2_vl")).compiled is None  # multimodal: the eager path
    monkeypatch.setenv("SPECSCOPE_COMPILE", "off")
    assert adapters.load(tiny_model_dir("qwen2")).compiled is None
    assert adapters.load(tiny_model_dir("qwen2"), kernels="stock").compiled is None


def test_warm_settles_the_path_before_any_run(monkeypatch, tmp_path):
    """And the compile-ahead's graph is the one sessions run on: its buffers are made as a
    prefill's are (inference tensors, which the graph's guards check), so measuring the row set and
    decoding compile nothing more (a second compile would cost minutes on a real target)."""
    from torch._dynamo.utils import counters

    tgt = target()  # compiled ahead (a fresh one would cost CI another compile)
    tgt.use_compiled, tgt._compiled_rows, tgt.compiled_prefill = False, None, None  # not settled yet
    monkeypatch.setattr(R, "_sets", {})  # row sets measured again, here, on both forwards
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    pair = Pair(tgt, None, "tiny", None)
    assert tgt.compiled.warm()
    graphs = counters["stats"]["unique_graphs"]
    try:
        warm(pair, PROMPT, tokens=2)
        assert tgt.compiled.ready and tgt.path in ("compiled", "eager")  # which one: measured
        assert tgt.path == ("compiled" if tgt.use_compiled else "eager")
        assert counters["stats"]["unique_graphs"] == graphs, "the warm-up's graph did not serve the sessions"
    finally:
        tgt.use_compiled, tgt.compiled_prefill = True, False  # as target() hands it to the tests after


def test_dropping_the_last_compiled_target_frees_its_graph(monkeypatch):
    from core import pairs

    calls = []
    monkeypatch.setattr(compiled, "release", lambda: calls.append(1))
    monkeypatch.setenv("SPECSCOPE_MAX_MODELS", "1")
    pairs.release()
    calls.clear()
    first = pairs.load_target(tiny_model_dir("qwen2"), "float32")
    first.compiled._fn = object()  # as if compiled: dynamo's cache holds it
    assert not calls
    pairs.load_target(tiny_model_dir("llama"), "float32")  # evicts the qwen2 target, the only compiled one
    assert calls
    pairs.release()


def test_release_frees_the_weights_frozen_into_compiled_graphs():
    """What the bench does before vLLM loads its own copy of the target, and the app when it drops
    its last model: after ``core.pairs.release`` no weight of a compiled target is left in memory
    (inductor's generated modules keep frozen weights as attributes past ``torch._dynamo.reset``:
    a released float32 1.5B target held 14.5 GB, and the OOM killer ended the bench). Last in this
    module: it drops the module's compiled targets."""
    import gc
    import weakref

    from core import pairs

    target()  # compiled (by the tests above, or now)
    weights = [weakref.ref(p) for t in _loaded.values() for p in t.model.parameters()]
    assert weights and all(t.compiled.ready for t in _loaded.values())
    _loaded.clear()
    pairs.release()
    gc.collect()
    left = sum(w() is not None for w in weights)
    assert left == 0, f"{left} of {len(weights)} weights still in memory"


def test_the_products_follow_their_measurement(monkeypatch, tmp_path):
    """``compiled.products``: rowdot's interleaved kernel where it measured cheaper than the library's
    packed product on this machine (and only where it runs: bfloat16, AVX512-BF16), the verdict kept
    per machine, the operator's ``SPECSCOPE_COMPILED_PRODUCTS`` above both (red with the timing
    ignored, or a forced rowdot taken where it cannot run). Each row count weighs its cost per token it
    can yield (t_n / n): a path 2x faster at one row and 15% slower at eight is kept, though its seconds
    sum higher (red with the seconds summed)."""
    from core import rowdot

    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    monkeypatch.delenv("SPECSCOPE_COMPILED_PRODUCTS", raising=False)
    tgt = adapters.load(tiny_model_dir("qwen2"), dtype="bfloat16")
    able = rowdot.available() and rowdot.dpbf16()
    amx = able and rowdot.amx()

    def rows(one, eight):
        return {"1": one, "8": eight}

    cases = [({"rowdot": rows(1.0, 8.0), "library": rows(2.0, 9.0), "amx": rows(3.0, 9.0)}, "rowdot")]
    cases += [({"rowdot": rows(2.0, 9.0), "library": rows(1.0, 8.0), "amx": rows(3.0, 9.0)}, "library")]
    cases += [({"rowdot": rows(2.0, 9.0), "library": rows(3.0, 9.0), "amx": rows(1.0, 8.0)}, "amx" if amx else "rowdot")]
    cases += [({"rowdot": rows(1.0, 11.5), "library": rows(2.0, 10.0), "amx": rows(3.0, 12.0)}, "rowdot")]  # summed: 12.5 > 12
    for times, want in cases:
        (tmp_path / "tuning.json").unlink(missing_ok=True)
        calls = []

        def timed(steps, paths, t=times):
            calls.append(tuple(paths))
            return {p: t[p] for p in paths}

        monkeypatch.setattr(compiled, "_time_products", timed)
        assert compiled.products(tgt.model) == (want if able else "library")
        assert compiled.products(tgt.model) == (want if able else "library")  # the kept verdict
        assert calls == ([("library", "rowdot", "amx") if amx else ("library", "rowdot")] if able else [])
    for forced in ("rowdot", "library", "amx"):
        monkeypatch.setenv("SPECSCOPE_COMPILED_PRODUCTS", forced)
        runs = able and (forced != "amx" or amx)
        assert compiled.products(tgt.model) == (forced if runs else "library")
    f32 = adapters.load(tiny_model_dir("qwen2"), dtype="float32")
    assert compiled.products(f32.model) == "library"  # rowdot_il is a bfloat16 kernel
    monkeypatch.setenv("SPECSCOPE_COMPILED_PRODUCTS", "fastest")
    with pytest.raises(InputError):
        compiled.products(tgt.model)


def test_the_products_are_timed_as_a_step_calls_them(monkeypatch):
    """``compiled._step_calls``: the choice times the products as the compiled forward on rowdot calls
    them (q / k / v as one call, gate / up as one, the lm_head last), over distinct layers from the
    first on, until ``SWEEP`` bytes (weights read from memory as in a step, not one matrix kept in
    cache), each call weighted so that every linear of the model counts as often as a step runs it
    (red with one layer's products standing for all without their weight, a layer's matrices timed
    twice instead of the next layer's, or the lm_head left out)."""
    tgt = adapters.load(tiny_model_dir("qwen2", num_layers=8), dtype="bfloat16")
    layers = list(tgt.model.model.layers)
    per_layer = sum(p.numel() * p.element_size() for p in layers[0].parameters())
    monkeypatch.setattr(compiled, "SWEEP", 3 * per_layer - 1)  # three layers' worth
    calls = compiled._step_calls(tgt.model)
    a = layers[0].self_attn
    assert [m for m in calls[0][0]] == [a.q_proj, a.k_proj, a.v_proj]
    assert calls[-1] == ([tgt.model.lm_head], 1.0)
    taken = [m for c, _ in calls[:-1] for m in c]
    assert len({id(m) for m in taken}) == len(taken) == 3 * 7  # three distinct layers
    counted: dict = {}
    for c, w in calls:
        for m in c:
            counted[tuple(m.weight.shape)] = counted.get(tuple(m.weight.shape), 0) + w
    want: dict = {}
    for m in tgt.model.modules():
        if isinstance(m, torch.nn.Linear):
            want[tuple(m.weight.shape)] = want.get(tuple(m.weight.shape), 0) + 1
    assert counted == pytest.approx(want)


@pytest.mark.parametrize("products", ["rowdot", "amx"])
def test_on_rowdots_products_a_single_row_is_exact_and_speculative_is_plain(monkeypatch, tmp_path, products):
    """The compiled forward on rowdot's interleaved kernel and on rowdot_amx (where each runs): close to
    transformers' forward, its row set one group from a single row up (so plain steps run unpadded), and
    speculative decoding bit-identical to plain decoding for every strategy. Eight layers: from
    about that many on, inductor fuses the one-row graph's residual adds and norms otherwise than
    the many-row graph's, and without ``emulate_precision_casts`` a fused kernel keeps float32 sums
    the other rounds, so a single row computes otherwise (red then: 39 of 40 steps differed)."""
    from core import rowdot

    if not (rowdot.available() and rowdot.dpbf16()):
        pytest.skip("rowdot_dpbf16: not built here (no AVX512-BF16, or no compiler)")
    if products == "amx" and not rowdot.amx():
        pytest.skip("rowdot_amx: not built here (no AMX-BF16)")
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    monkeypatch.setenv("SPECSCOPE_COMPILED_PRODUCTS", products)
    tgt = adapters.load(tiny_model_dir(FAMILY, num_layers=8), dtype="bfloat16", kernels="rowdot")
    assert tgt.compiled.products == products
    assert tgt.compiled.warm(), tgt.compiled.failed
    ids = torch.randint(0, tgt.vocab_size, (40,), generator=torch.Generator().manual_seed(1))
    sess, _, _ = tgt.prefill(tgt.encode_ids(ids[:30]))
    ref, _ = tgt.forward(sess, ids[30:].tolist())
    tgt.use_compiled = True
    rows = R.row_set(tgt, refresh=True)
    assert rows.sizes == R.CANDIDATES and rows.groups == (R.CANDIDATES,) and rows.trees, rows
    sess, _, _ = tgt.prefill(tgt.encode_ids(ids[:30]))
    assert isinstance(sess.cache, compiled.StaticKV)
    got, _ = tgt.forward(sess, ids[30:].tolist())
    assert torch.allclose(got.float(), ref.float(), atol=3e-2, rtol=3e-2)
    drafter = ModelDrafter(tgt.truncated(1), "first layer")
    plain, plain_rows = decode(tgt, None, "chain")
    for strategy in ("auto", "chain", "tree"):
        tr, got_rows = decode(tgt, drafter, strategy)
        assert tr.output == plain.output, strategy
        assert all(torch.equal(a, b) for a, b in zip(plain_rows, got_rows)), strategy


def test_a_sum_over_one_row_is_taken_as_over_many_rows():
    """With the compiled forward's inductor settings (``compiled.inductor_settings``), a row's sum of
    squares (an RMS norm's) compiles for one row (the graph inductor specialises) to the same float32
    value as for that row among several, bit for bit. Red without the least work per thread set to
    the hidden size: the one-row graph splits its 1536 squares over the two threads, each summing
    its half (the real target's one-row step then differed at 2 of 96 probe positions)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: nothing to split a sum over")
    sq = torch.compile(lambda x: x.float().pow(2).mean(-1), dynamic=True, fullgraph=True)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, 1536, generator=g).bfloat16() * 4 for _ in range(8)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the tests run on one (tests/conftest.py); the real target's sessions on two
    try:
        with torch._inductor.config.patch(compiled.inductor_settings(1536)):
            many = [sq(x) for x in xs]  # the graph for any row count
            ones = [sq(x[i : i + 1]) for x in xs for i in range(3)]  # the one-row graph
    finally:
        torch.set_num_threads(before)
    assert torch.equal(torch.cat(ones), torch.cat(many))
