"""EAGLE-3 features taken while distilling (tools/train/distill.py --batch N --features DIR): each
record holds the ids decoding produced and the same aux rows and top-k as a prefill of those ids
(the features command's path) to the cache's float16; the features command then finds the rows
done; a prompt that fills the token limit is skipped and a long answer cut; a generation config's
repetition penalty is not applied (the answers stay the target's greedy ones)."""

import json

import pytest
import torch

from core import adapters
from core.drafters.eagle3 import AuxTaps
from core.engine import generate
from tools.tiny import adapter_cache, tiny_model_dir
from tools.train import distill

load = adapter_cache()
AUX = [2, 0, 1]
PROMPTS = ["hello", "Describe the picture of a red car on the street in detail please.", "count to three", "two words"]


def make_cache(tmp_path, max_tokens: int = 0):
    """A feature cache (meta.json, vocab.json, one shard) made by the features command."""
    from tools.train.features import main

    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"image": None, "prompt": f"q {i}", "answer": f"a {i} b c"}) + "\n" for i in range(3)))
    out = tmp_path / "feats"
    args = ["--target", tiny_model_dir("qwen2"), "--data", str(seed), "--out", str(out), "--aux-layers", ",".join(map(str, AUX))]
    assert (
        main(args + ["--draft-vocab", "48", "--vocab-samples", "3", "--top-k", "8", "--max-tokens", str(max_tokens), "--threads", "1"]) == 0
    )
    return out


def reference(tgt, ids: torch.Tensor, plen: int, vocab: list[int], k: int):
    """aux (T, 3H) and top-k (ids, p) of a prefill of ``ids``, as the features command takes them."""
    from tools.train.features import draft_logits, sparse_targets

    enc = tgt.encode(PROMPTS[0])
    taps = AuxTaps(tgt, AUX)
    try:
        _, _, hidden = tgt.prefill(adapters.Encoded(ids[None].long(), enc.extra, False), want_hidden=True, all_logits=False)
        aux = taps.lookup(hidden).float()
    finally:
        taps.remove()
    with torch.no_grad():
        lm = tgt.model.get_output_embeddings().weight[torch.tensor(vocab)].float()
    tk_ids, tk_p = sparse_targets(draft_logits(lm, None, hidden[plen - 1 : ids.shape[0] - 1].float()), k)
    return aux, tk_ids, tk_p


def distill_with_features(tmp_path, feats, max_new=10):
    rows = [{"image": None, "prompt": p, "source": i} for i, p in enumerate(PROMPTS)]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "answers.jsonl"
    common = ["--target", tiny_model_dir("qwen2"), "--prompts", str(data), "--out", str(out), "--max-new-tokens", str(max_new)]
    distill.main(common + ["--batch", "3", "--threads", "1", "--features", str(feats)])
    return [json.loads(x) for x in out.read_text().splitlines()], out


def test_features_taken_while_distilling_equal_a_prefill_of_the_same_ids(tmp_path, monkeypatch):
    from tools.train.features import FeatureCache, row_key

    torch.set_num_threads(1)
    feats = make_cache(tmp_path)
    answered, out = distill_with_features(tmp_path, feats)
    tgt = load("qwen2")
    cache = FeatureCache(feats)
    by_key = {s["key"]: s for s in cache.samples}
    assert len(cache) == 3 + len(PROMPTS)
    for r in answered:
        rec = by_key[row_key(r)]
        enc = tgt.encode(r["prompt"])
        new = generate(tgt, r["prompt"], None, max_new_tokens=10, detail=False).output
        assert rec["ids"].tolist() == enc.input_ids[0].tolist() + new  # the decoded ids, not a re-encoding
        assert int(rec["prompt_len"]) == enc.length
        aux, tk_ids, tk_p = reference(tgt, rec["ids"], enc.length, cache.vocab, 8)
        got = rec["aux"].float()
        assert torch.allclose(got[:-1], aux[:-1], rtol=2e-3, atol=2e-3)  # float16 storage
        assert not got[-1].any()  # the last position's aux: no forward read it, no loss reads it
        assert rec["topk_ids"].shape == tk_ids.shape == (len(new), 8)
        assert torch.allclose(rec["topk_p"].float(), tk_p, atol=2e-3)
        assert torch.equal(rec["topk_ids"][:, 0], tk_ids[:, 0])
    # the features command finds every answered row done: no target forward
    import tools.train.eagle3 as e3
    from tools.train.features import main

    calls = []
    monkeypatch.setattr(e3, "target_features", lambda *a, **kw: calls.append(a) or pytest.fail("recomputed"))
    args = ["--target", tiny_model_dir("qwen2"), "--data", str(out), "--out", str(feats), "--aux-layers", ",".join(map(str, AUX))]
    assert main(args + ["--draft-vocab", "48", "--vocab-samples", "3", "--top-k", "8", "--max-tokens", "0", "--threads", "1"]) == 0
    assert calls == []


def test_the_token_limit_cuts_answers_and_skips_prompts_that_fill_it(tmp_path):
    from tools.train.features import FeatureCache, _load_shard, row_key, shard_paths

    torch.set_num_threads(1)
    tgt = load("qwen2")
    lens = sorted(tgt.encode(p).length for p in PROMPTS)
    limit = lens[-2] + 5  # the longest prompt fills it, the next one's 10-token answer is cut
    assert lens[-1] >= limit
    feats = make_cache(tmp_path, max_tokens=limit)
    answered, _ = distill_with_features(tmp_path, feats)
    cache = FeatureCache(feats)
    skipped = [s["key"] for p in shard_paths(feats) for s in _load_shard(p)["skipped"]]
    longest = next(r for r in answered if tgt.encode(r["prompt"]).length == lens[-1])
    assert skipped == [row_key(longest)]
    cut = 0
    for r in answered:
        if r is longest:
            continue
        rec = next(s for s in cache.samples if s["key"] == row_key(r))
        plen = tgt.encode(r["prompt"]).length
        new = generate(tgt, r["prompt"], None, max_new_tokens=10, detail=False).output
        T = min(plen + len(new), limit)
        assert rec["ids"].shape[0] == T and rec["topk_ids"].shape[0] == T - plen
        aux, tk_ids, _ = reference(tgt, rec["ids"], plen, cache.vocab, 8)
        known = T if plen + len(new) > limit else T - 1  # cut: the last kept position's aux is known too
        cut += known == T
        assert torch.allclose(rec["aux"].float()[:known], aux[:known], rtol=2e-3, atol=2e-3)
        assert not rec["aux"][known:].float().any()
        assert torch.equal(rec["topk_ids"][:, 0], tk_ids[:, 0])
    assert cut >= 1


def test_a_generation_configs_repetition_penalty_is_not_applied():
    torch.set_num_threads(1)
    tgt = load("qwen2")
    ref = [generate(tgt, p, None, max_new_tokens=12, detail=False).output for p in PROMPTS]
    cfg = tgt.model.generation_config
    saved = cfg.repetition_penalty
    cfg.repetition_penalty = 3.0  # as a Hub model's generation_config.json may set it
    try:
        enc = tgt.encode(PROMPTS[1]).input_ids
        with torch.inference_mode():
            penalised = tgt.model.generate(input_ids=enc, do_sample=False, max_new_tokens=12, pad_token_id=0)[0, enc.shape[1] :].tolist()
        assert penalised[: len(ref[1])] != ref[1]  # the penalty changes this answer when generate applies it
        _, news = distill.greedy_batch(tgt, PROMPTS, 12)
    finally:
        cfg.repetition_penalty = saved
    assert news == ref


def test_a_pick_that_is_not_the_logits_argmax_is_refused(tmp_path):
    torch.set_num_threads(1)
    tgt = load("qwen2")
    vocab = torch.arange(48)
    taps = distill.BatchTaps(tgt, AUX, vocab, 8)
    try:
        _, news = distill.greedy_batch(tgt, PROMPTS[:2], 6, taps)
    finally:
        taps.remove()
    news[1][2] = (news[1][2] + 1) % tgt.vocab_size
    with pytest.raises(RuntimeError, match="argmax"):
        distill.batch_features(taps, news, ["a", "b"])


def test_only_the_batchs_own_forwards_are_recorded(tmp_path):
    """A row with an image decodes on the engine between batches, with the hooks in place: its
    forwards must not enter the next batch's records."""
    torch.set_num_threads(1)
    tgt = load("qwen2")
    taps = distill.BatchTaps(tgt, AUX, torch.arange(48), 8)
    try:
        _, news = distill.greedy_batch(tgt, PROMPTS[:2], 6, taps)
        alone = distill.batch_features(taps, news, ["a", "b"])
        generate(tgt, "an unrelated row", None, max_new_tokens=4, detail=False)
        assert taps.forwards == []
        _, again = distill.greedy_batch(tgt, PROMPTS[:2], 6, taps)
        after = distill.batch_features(taps, again, ["a", "b"])
    finally:
        taps.remove()
    for x, y in zip(alone, after):
        assert torch.equal(x["aux"], y["aux"]) and torch.equal(x["topk_ids"], y["topk_ids"])


@pytest.mark.parametrize(
    "case, message",
    [
        ("batch 1", "give --batch N"),
        ("no cache", "no feature cache there"),
        ("other dtype", "dtype float32 vs bfloat16"),
    ],
)
def test_features_refused_with_a_clear_message(tmp_path, capsys, case, message):
    torch.set_num_threads(1)
    feats = make_cache(tmp_path) if case != "no cache" else tmp_path / "empty"
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"image": None, "prompt": "hello"}) + "\n")
    args = ["--target", tiny_model_dir("qwen2"), "--prompts", str(data), "--out", str(tmp_path / "o.jsonl"), "--features", str(feats)]
    args += ["--batch", "1"] if case == "batch 1" else ["--batch", "2"]
    args += ["--dtype", "bfloat16"] if case == "other dtype" else []
    with pytest.raises(SystemExit) as e:
        distill.main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists() or not (tmp_path / "o.jsonl").read_text()
