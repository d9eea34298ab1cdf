"""The EAGLE-3 feature cache (tools/train/features.py) and training from it (``--features``): the
cached features equal the live ones to float16 precision, the sparse top-k loss equals the dense
one when k covers the draft vocabulary, the trainer runs and resumes from the cache without
running the target, and the features command resumes (done samples skipped, a torn shard redone,
other settings refused)."""

import json
import os

import pytest
import torch

from core.drafters import DraftSpec, make_drafter
from core.drafters.eagle3 import AuxTaps, Eagle3Head, new_head
from core.engine import generate
from tools.tiny import adapter_cache, tiny_image

load = adapter_cache()
AUX = [2, 0, 1]


def write_rows(path, rows, torn: str = ""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + torn)


def run_features(tgt, data, out, *extra):
    from tools.train.features import main

    args = ["--target", tgt.name, "--data", str(data), "--out", str(out), "--aux-layers", ",".join(map(str, AUX))]
    return main(args + ["--threads", "1", *extra])


def live(tgt, sample, **kw):
    from tools.train.eagle3 import target_features

    taps = AuxTaps(tgt, AUX)
    try:
        return target_features(tgt, taps, sample, **kw)
    finally:
        taps.remove()


def image_token(tgt):
    cfg = tgt.model.config
    return getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)


# ---------------------------------------------------------------------------------------------
def test_sparse_loss_equals_the_dense_loss():
    """``ttt_loss`` on the target's top-k over the draft vocabulary (rows prompt_len - 1 .. T - 2,
    draft ids) gives the dense loss, its gradients and its top-1 agreement when k covers the draft
    vocabulary (float32: to rounding; the float16 probabilities the cache keeps: to 1e-3); a
    smaller k gives another loss."""
    from tools.train.eagle3 import ttt_loss
    from tools.train.features import sparse_targets

    tgt = load("llama")
    vocab = list(range(1, 400, 3))
    head = new_head(tgt, draft_vocab=vocab, aux_layer_ids=AUX, seed=2)
    f = live(tgt, {"prompt": "hello there", "image": None, "answer": "one two three four five six"})
    f["logits"] = f["logits"] * 30  # a decided target: the loss depends on which rows are read
    plen, T = f["prompt_len"], f["ids"].shape[0]
    dl = f["logits"][:, vocab][plen - 1 : T - 1]

    def loss_of(feats):
        head.zero_grad(set_to_none=True)
        loss, acc = ttt_loss(head, tgt, feats, 3)
        loss.backward()
        return loss.item(), acc, [p.grad.clone() for p in head.parameters() if p.grad is not None]

    dense = loss_of(f)
    ids, p = sparse_targets(dl, len(vocab))
    sparse = dict(f, logits=None, topk_ids=ids, topk_p=p)
    got = loss_of(sparse)
    assert got[0] == pytest.approx(dense[0], rel=1e-5) and got[1] == dense[1]
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(got[2], dense[2]))
    half = loss_of(dict(sparse, topk_p=p.half()))
    assert half[0] == pytest.approx(dense[0], rel=1e-3)
    ids2, p2 = sparse_targets(dl, 2)
    assert abs(loss_of(dict(f, logits=None, topk_ids=ids2, topk_p=p2))[0] - dense[0]) > 1e-3


# ---------------------------------------------------------------------------------------------
def test_cache_round_trip(tmp_path):
    """The features command on a VLM target (an image sample and text ones), read back as the
    trainer reads it: ids, prompt length and image embeddings as computed live, aux features to
    float16 precision, the top-k probabilities the live distribution's over the draft vocabulary
    (draft ids, sorted), and the training loss from the cache the live dense loss."""
    from tools.train.eagle3 import ttt_loss
    from tools.train.features import FeatureCache

    tgt = load("llava")
    tiny_image().save(tmp_path / "img.png")
    rows = [
        {"image": None, "prompt": "hello world", "answer": "one two three four"},
        {"image": "img.png", "prompt": "Describe the picture.", "answer": "a red square on the left"},
        {"image": None, "prompt": "count to three", "answer": "1 2 3"},
    ]
    write_rows(tmp_path / "data.jsonl", rows)
    out = tmp_path / "feats"
    k = 24
    assert run_features(tgt, tmp_path / "data.jsonl", out, "--draft-vocab", str(k), "--vocab-samples", "3", "--top-k", str(k)) == 0
    cache = FeatureCache(out)
    voc = json.loads((out / "vocab.json").read_text())
    assert cache.vocab == voc["draft_to_target"] and len(cache.vocab) == k and voc["counts"]
    assert cache.meta["aux_layer_ids"] == AUX and len(cache) == 3 and not cache.bad
    vocab = torch.tensor(cache.vocab)
    head = new_head(tgt, draft_vocab=cache.vocab, aux_layer_ids=AUX, seed=1)
    img_id = image_token(tgt)
    for i, (row, s) in enumerate(zip(rows, cache.samples)):
        sample = {"image": tiny_image() if row["image"] else None, "prompt": row["prompt"], "answer": row["answer"]}
        ref = live(tgt, sample)
        got = cache.feats(i)
        plen, T = ref["prompt_len"], ref["ids"].shape[0]
        assert torch.equal(got["ids"], ref["ids"]) and got["prompt_len"] == plen
        assert s["aux"].dtype == torch.float16 and s["topk_p"].dtype == torch.float16 and s["ids"].dtype == torch.int32
        assert torch.allclose(got["aux"], ref["aux"], rtol=1e-3, atol=1e-3)
        p = torch.softmax(ref["logits"][:, vocab], -1)[plen - 1 : T - 1]
        assert got["topk_ids"].shape == (T - plen, k)
        assert torch.allclose(got["topk_p"], p.gather(-1, got["topk_ids"]), atol=1e-3)
        assert torch.allclose(p.gather(-1, got["topk_ids"][:, :1])[:, 0], p.max(-1).values, atol=1e-6)  # sorted: the best first
        assert bool((got["topk_p"].diff(dim=-1) <= 0).all())
        if row["image"]:
            vis = ref["ids"] == img_id
            assert s["image_rows"].numel() == int(vis.sum()) > 0
            assert torch.allclose(got["embeds"][vis], ref["embeds"][vis], rtol=1e-3, atol=1e-3)
        else:
            assert s["embeds"] is None
        with torch.no_grad():
            a, _ = ttt_loss(head, tgt, got, 2, img_id)
            b, _ = ttt_loss(head, tgt, ref, 2, img_id)
        assert a.item() == pytest.approx(b.item(), rel=2e-3), i


# ---------------------------------------------------------------------------------------------
def test_features_command_resumes(tmp_path, monkeypatch):
    """Rerun on a grown data file (a torn last line left for later): only the new rows run the
    target; a shard that does not load is removed and its samples computed again; a prompt too
    long for --max-tokens is recorded as skipped (not retried), a long answer cut; other
    settings for the same directory are refused."""
    import tools.train.eagle3 as e3
    from tools.train.features import FeatureCache, row_key

    tgt = load("llama")
    calls = []
    real = e3.target_features

    def counted(target, taps, sample, **kw):
        calls.append(sample["prompt"])
        return real(target, taps, sample, **kw)

    monkeypatch.setattr(e3, "target_features", counted)
    rows = [{"image": None, "prompt": f"question {i}", "answer": f"answer {i} " * 3} for i in range(5)]
    rows.append({"image": None, "prompt": "long " * 80, "answer": "x"})
    rows.append({"image": None, "prompt": "q long", "answer": "word " * 60})
    plen = e3.sample_ids(tgt, rows[0])[0].length
    max_tokens = plen + 20
    assert e3.sample_ids(tgt, rows[5])[0].length >= max_tokens and e3.sample_ids(tgt, rows[6])[1].shape[1] > max_tokens
    data, out = tmp_path / "data.jsonl", tmp_path / "feats"
    opts = ["--draft-vocab", "32", "--vocab-samples", "3", "--shard-samples", "2", "--max-tokens", str(max_tokens)]
    write_rows(data, rows[:3], torn=json.dumps(rows[3])[:20])
    assert run_features(tgt, data, out, *opts) == 0
    assert calls == [r["prompt"] for r in rows[:3]]
    assert sorted(os.listdir(out)) == ["meta.json", "shard_00000.pt", "shard_00001.pt", "vocab.json"]
    calls.clear()
    write_rows(data, rows)
    assert run_features(tgt, data, out, *opts) == 0
    assert calls == [r["prompt"] for r in (rows[3], rows[4], rows[6])]  # rows[5]: skipped before the target
    cache = FeatureCache(out)
    assert sorted(s["key"] for s in cache.samples) == sorted(row_key(r) for i, r in enumerate(rows) if i != 5)
    cut = next(s for s in cache.samples if s["key"] == row_key(rows[6]))
    assert cut["ids"].shape[0] == max_tokens
    # a torn shard: removed, its samples redone; nothing else runs again
    (out / "shard_00001.pt").write_bytes((out / "shard_00001.pt").read_bytes()[:100])
    assert [b.split()[0] for b in FeatureCache(out).bad] == ["shard_00001.pt"]
    calls.clear()
    assert run_features(tgt, data, out, *opts) == 0
    assert calls == [rows[2]["prompt"]]
    assert len(FeatureCache(out)) == 6 and not FeatureCache(out).bad
    calls.clear()
    assert run_features(tgt, data, out, *opts) == 0 and calls == []
    with pytest.raises(SystemExit):
        run_features(tgt, data, out, *opts[:-2], "--top-k", "8")


# ---------------------------------------------------------------------------------------------
def test_train_from_cache_runs_and_resumes(tmp_path, monkeypatch):
    """``--features``: steps over shuffled epochs of the cached samples without running the target
    (its features function is made to fail); stopped after 2 steps and resumed to 5, the head
    equals an uninterrupted 5-step run's (same samples in the same order: epoch and position kept);
    the log counts epochs, samples and tokens; the head loads and decodes losslessly."""
    import tools.train.eagle3 as e3
    from tools.train.__main__ import main

    tgt = load("llama")
    rows = [{"image": None, "prompt": f"question {i}", "answer": f"the answer is {i} " * (i + 1)} for i in range(3)]
    write_rows(tmp_path / "data.jsonl", rows)
    feats = tmp_path / "feats"
    assert run_features(tgt, tmp_path / "data.jsonl", feats, "--draft-vocab", "40", "--vocab-samples", "3") == 0

    def boom(*a, **k):
        raise AssertionError("the target ran")

    monkeypatch.setattr(e3, "target_features", boom)
    torch.set_num_threads(1)

    def train(name, *extra):
        args = ["eagle3", "--target", tgt.name, "--features", str(feats), "--out", str(tmp_path / name)]
        args += ["--run-dir", str(tmp_path / f"run-{name}"), "--batch", "2", "--ttt", "2", "--threads", "1", *extra]
        assert main(args) == 0
        return Eagle3Head.load(str(tmp_path / name)), (tmp_path / f"run-{name}" / "log.txt").read_text()

    straight, _ = train("a", "--steps", "5")
    train("b", "--steps", "2")
    resumed, logtxt = train("b", "--steps", "5", "--resume")
    assert "resuming from step 2" in logtxt and "feature cache" in logtxt
    assert (
        "step 2 loss" in logtxt
        and "epoch 1.33 samples 4 tokens" in logtxt
        and "step 5 loss" in logtxt
        and "epoch 3.33 samples 10" in logtxt
    )
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), n
    assert json.loads((tmp_path / "run-b" / "vocab.json").read_text()) == json.loads((feats / "vocab.json").read_text())
    assert resumed.draft_to_target().tolist() == json.loads((feats / "vocab.json").read_text())["draft_to_target"]
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["specscope"]["steps"] == 5 and cfg["specscope"]["epochs"] == pytest.approx(3.333, abs=1e-3)
    assert cfg["eagle_aux_hidden_state_layer_ids"] == AUX
    d = make_drafter(str(tmp_path / "b"), tgt)
    monkeypatch.undo()
    ar = generate(tgt, "hello", None, max_new_tokens=8)
    assert generate(tgt, "hello", None, d, DraftSpec("chain", gamma=3), max_new_tokens=8).output == ar.output
    # the cache's layers are the head's: others refused
    with pytest.raises(SystemExit):
        main(["eagle3", "--target", tgt.name, "--features", str(feats), "--out", str(tmp_path / "c"), "--aux-layers", "0,1,2"])


def test_fresh_first_order():
    """``fresh_first_order``: every index once; the samples past ``fresh_from`` all within the first
    2 x their number, each pair of that prefix mixing new and old in equal numbers."""
    import random

    from tools.train.eagle3 import fresh_first_order

    for n, f in ((100, 70), (100, 30), (10, 0), (10, 10), (5, 9)):
        order = fresh_first_order(n, f, random.Random(1))
        assert sorted(order) == list(range(n))
        new = max(0, n - f)
        m = min(new, min(f, n))
        head = order[: new + m]
        assert set(range(f, n)) <= set(head) and sum(i < f for i in head) == m


def test_train_fresh_samples_first(tmp_path, monkeypatch):
    """``--fresh-from head``: a head continued on a grown cache takes the samples added since its own
    run (its config's cache size) within its first steps; a bad value is a one-line error."""
    from tools.train.__main__ import main
    from tools.train.features import FeatureCache

    tgt = load("llama")
    rows = [{"image": None, "prompt": f"question {i}", "answer": f"answer {i} " * (i % 3 + 1)} for i in range(8)]
    feats = tmp_path / "feats"
    write_rows(tmp_path / "data.jsonl", rows[:6])
    assert run_features(tgt, tmp_path / "data.jsonl", feats, "--draft-vocab", "40", "--vocab-samples", "3") == 0
    torch.set_num_threads(1)
    base = ["--target", tgt.name, "--features", str(feats), "--batch", "2", "--ttt", "2", "--threads", "1"]
    assert main(["eagle3", *base, "--out", str(tmp_path / "a"), "--run-dir", str(tmp_path / "ra"), "--steps", "1"]) == 0
    write_rows(tmp_path / "data.jsonl", rows)  # two more answers: their shard comes after the first six's
    assert run_features(tgt, tmp_path / "data.jsonl", feats, "--draft-vocab", "40", "--vocab-samples", "3") == 0
    cache = FeatureCache(feats)
    new_ids = {i for i, s in enumerate(cache.samples) if int(s["ids"].shape[0]) and i >= 6}
    assert len(cache) == 8 and new_ids == {6, 7}
    seen = []
    real = FeatureCache.feats

    def record(self, i):
        seen.append(i)
        return real(self, i)

    monkeypatch.setattr(FeatureCache, "feats", record)
    args = [*base, "--out", str(tmp_path / "b"), "--run-dir", str(tmp_path / "rb"), "--init-head", str(tmp_path / "a")]
    assert main(["eagle3", *args, "--steps", "2", "--fresh-from", "head", "--seed", "3"]) == 0
    assert {6, 7} <= set(seen[:4]), seen
    assert "from index 6 on first" in (tmp_path / "rb" / "log.txt").read_text()
    for bad in ("x", "-1"):
        with pytest.raises(SystemExit):
            main(["eagle3", *args, "--steps", "1", "--fresh-from", bad])
    with pytest.raises(SystemExit):  # no head to read the size from
        main(["eagle3", *base, "--out", str(tmp_path / "c"), "--steps", "1", "--fresh-from", "head"])


def test_caches_read_together(tmp_path):
    """``--features A,B``: two caches of one vocabulary and settings read as one (A's samples, then
    B's), the trainer runs on them; a cache of another vocabulary is refused with a message."""
    from tools.train.__main__ import main
    from tools.train.features import FeatureCache

    tgt = load("llama")
    rows = [{"image": None, "prompt": f"question {i}", "answer": f"answer {i} " * (i % 3 + 1)} for i in range(5)]
    write_rows(tmp_path / "a.jsonl", rows[:3])
    write_rows(tmp_path / "b.jsonl", [{"image": None, "prompt": "", "answer": r["prompt"]} for r in rows[3:]])
    a, b, c = tmp_path / "fa", tmp_path / "fb", tmp_path / "fc"
    assert run_features(tgt, tmp_path / "a.jsonl", a, "--draft-vocab", "40", "--vocab-samples", "3") == 0
    assert run_features(tgt, tmp_path / "b.jsonl", b, "--vocab", str(a / "vocab.json")) == 0
    one, two, both = FeatureCache(a), FeatureCache(b), FeatureCache(f"{a},{b}")
    assert len(both) == 5 and both.vocab == one.vocab
    assert [s["ids"].tolist() for s in both.samples] == [s["ids"].tolist() for s in one.samples + two.samples]
    torch.set_num_threads(1)
    args = ["eagle3", "--target", tgt.name, "--out", str(tmp_path / "h"), "--batch", "2", "--ttt", "2", "--threads", "1"]
    assert main([*args, "--features", f"{a},{b}", "--steps", "3", "--run-dir", str(tmp_path / "r")]) == 0
    assert "5 samples" in (tmp_path / "r" / "log.txt").read_text()
    assert run_features(tgt, tmp_path / "b.jsonl", c, "--draft-vocab", "30", "--vocab-samples", "2") == 0
    with pytest.raises(ValueError, match="differ from"):
        FeatureCache(f"{a},{c}")
    with pytest.raises(SystemExit):
        main([*args, "--features", f"{a},{c}", "--steps", "1"])


def test_features_follow_a_growing_file(tmp_path, monkeypatch):
    """--wait-minutes: rows appended while it runs (as distill.py appends) are computed in the same
    run, the vocabulary waiting for --vocab-samples rows while they keep coming; it stops once none
    came for that long."""
    import threading
    import time

    import tools.train.eagle3 as e3
    from tools.train.features import FeatureCache

    tgt = load("llama")
    calls = []
    real = e3.target_features
    monkeypatch.setattr(e3, "target_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    rows = [{"image": None, "prompt": f"question {i}", "answer": f"answer {i}"} for i in range(4)]
    data = tmp_path / "data.jsonl"
    write_rows(data, rows[:1])

    def append():
        for i in (1, 2, 3):
            time.sleep(0.4)
            with open(data, "a") as f:
                f.write(json.dumps(rows[i]) + "\n")

    th = threading.Thread(target=append)
    th.start()
    t0 = time.time()
    assert run_features(tgt, data, tmp_path / "feats", "--vocab-samples", "3", "--wait-minutes", "0.03", "--poll", "0.1") == 0
    th.join()
    assert len(calls) == 4 and len(FeatureCache(tmp_path / "feats")) == 4 and time.time() - t0 < 30
    counts = json.loads((tmp_path / "feats" / "vocab.json").read_text())["counts"]
    assert sum(counts.values()) == sum(ids.shape[1] - enc.length for enc, ids in (e3.sample_ids(tgt, r) for r in rows[:3]))


# ---------------------------------------------------------------------------------------------
def test_bfloat16_features_and_a_small_head_trained_under_autocast(tmp_path):
    """``--dtype bfloat16`` (the target's prefill as it decodes on a bf16 CPU): the cache records
    the dtype, its features are the float32 ones to bfloat16 precision, a rerun in another dtype
    is refused, and a float32 trainer reads it (the target's checksum is the same in both dtypes).
    ``--intermediate-size`` and ``--autocast bfloat16`` train a smaller head (float32 weights) that
    loads and decodes losslessly."""
    from tools.train.__main__ import main
    from tools.train.features import FeatureCache

    tgt = load("llama")
    rows = [{"image": None, "prompt": f"question {i}", "answer": f"the answer is {i} " * (i + 2)} for i in range(3)]
    write_rows(tmp_path / "data.jsonl", rows)
    opts = ["--draft-vocab", "40", "--vocab-samples", "3"]
    assert run_features(tgt, tmp_path / "data.jsonl", tmp_path / "f32", *opts) == 0
    assert run_features(tgt, tmp_path / "data.jsonl", tmp_path / "bf16", *opts, "--dtype", "bfloat16") == 0
    a, b = FeatureCache(tmp_path / "f32"), FeatureCache(tmp_path / "bf16")
    assert a.meta["dtype"] == "float32" and b.meta["dtype"] == "bfloat16" and a.meta["target"] == b.meta["target"]
    by_key = {s["key"]: s for s in a.samples}
    for s in b.samples:
        ref = by_key[s["key"]]
        assert torch.equal(s["ids"], ref["ids"])
        diff = (s["aux"].float() - ref["aux"].float()).abs().max()
        assert 0 < diff <= 0.05 * max(1.0, float(ref["aux"].float().abs().max())), diff  # bf16 rounding, not the same run
    with pytest.raises(SystemExit):
        run_features(tgt, tmp_path / "data.jsonl", tmp_path / "bf16", *opts)  # float32 into a bfloat16 cache
    from core.device import resolve_dtype  # auto (scripts/e3_data.sh's default): the dtype a target gets here

    here = tmp_path / ("bf16" if resolve_dtype("auto") == "bfloat16" else "f32")
    assert run_features(tgt, tmp_path / "data.jsonl", here, *opts, "--dtype", "auto") == 0
    torch.set_num_threads(1)
    args = ["eagle3", "--target", tgt.name, "--features", str(tmp_path / "bf16"), "--out", str(tmp_path / "head")]
    args += ["--run-dir", str(tmp_path / "run"), "--batch", "2", "--ttt", "2", "--threads", "1", "--steps", "3"]
    with pytest.raises(SystemExit):  # a clear refusal, not a traceback from the layer
        main(args + ["--intermediate-size", "0"])
    assert main(args + ["--intermediate-size", "24", "--autocast", "bfloat16"]) == 0
    head = Eagle3Head.load(str(tmp_path / "head"))
    assert head.config.layer.intermediate_size == 24
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in head.parameters())
    assert "step 3 loss" in (tmp_path / "run" / "log.txt").read_text()
    ar = generate(tgt, "hello", None, max_new_tokens=8)
    d = make_drafter(str(tmp_path / "head"), tgt)
    assert generate(tgt, "hello", None, d, DraftSpec("chain", gamma=3), max_new_tokens=8).output == ar.output
