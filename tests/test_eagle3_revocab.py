"""A feature cache relabelled over another draft vocabulary (tools/train/revocab.py): the targets
the target's tail computes from the cached residual equal those a new feature cache would record
over that vocabulary, the vocabulary is the answers' most frequent tokens, the trainer reads the
label cache as a cache, a tail that does not reproduce the cache is refused, a stopped run goes on
where it stopped, and image samples are refused."""

import json

import pytest
import torch

from tools.tiny import adapter_cache, tiny_image

load = adapter_cache()
AUX = "0,1,2"  # three layers: the tail is the last layer and the final norm


def rows():
    return [{"image": None, "prompt": f"question {i}?", "answer": f"answer {i} is " + "yes no " * (i % 3 + 1)} for i in range(6)]


def features(tgt, data, out, *extra):
    from tools.train.features import main

    return main(["--target", tgt.name, "--data", str(data), "--out", str(out), "--aux-layers", AUX, "--threads", "1", *extra])


def revocab(tgt, base, out, *extra):
    from tools.train.revocab import main

    return main(["--target", tgt.name, "--features", str(base), "--out", str(out), "--threads", "1", *extra])


def write(path, rs):
    path.write_text("".join(json.dumps(r) + "\n" for r in rs))


@pytest.fixture()
def base(tmp_path):
    tgt = load("qwen2", num_layers=3)
    write(tmp_path / "data.jsonl", rows())
    # the old vocabulary from the first two rows only, prompts included, as the features command fixes it
    assert (
        features(tgt, tmp_path / "data.jsonl", tmp_path / "feats", "--draft-vocab", "24", "--vocab-samples", "2", "--shard-samples", "2")
        == 0
    )
    return tgt, tmp_path


def test_labels_equal_a_new_cache_over_the_new_vocabulary(base):
    from tools.train.__main__ import main as train
    from tools.train.features import FeatureCache
    from tools.train.revocab import answer_vocabulary

    tgt, tmp = base
    assert revocab(tgt, tmp / "feats", tmp / "v2", "--draft-vocab", "16") == 0
    old, new = FeatureCache(tmp / "feats"), FeatureCache(tmp / "v2")
    want, _ = answer_vocabulary(old.samples, 16, list(tgt.eos_ids), tgt.vocab_size)
    assert new.vocab == want != old.vocab and not new.bad and len(new) == len(old) == 6
    assert new.meta["labels_of"] and new.meta["draft_vocab"] == 16 and new.meta["tail_check"]["top1_equal"] == 1.0
    # 16 ids of the answers hold more of the answer tokens than 24 of the first two rows' prompts and answers
    answers = [t for s in new.samples for t in s["ids"][int(s["prompt_len"]) :].tolist()]

    def held(v):
        return sum(t in set(v) for t in answers) / len(answers)

    assert held(new.vocab) > held(old.vocab)
    # the same targets as the features command computing the cache again over that vocabulary
    assert features(tgt, tmp / "data.jsonl", tmp / "again", "--vocab", str(tmp / "v2" / "vocab.json")) == 0
    ref = FeatureCache(tmp / "again")
    for i in range(len(ref)):
        a, b = new.feats(i), ref.feats(i)
        assert torch.equal(a["ids"], b["ids"]) and torch.equal(a["aux"], old.feats(i)["aux"])
        assert torch.equal(a["topk_ids"][:, 0], b["topk_ids"][:, 0])
        assert torch.allclose(a["topk_p"], b["topk_p"], atol=2e-3)
    torch.set_num_threads(1)
    args = ["eagle3", "--target", tgt.name, "--out", str(tmp / "h"), "--batch", "2", "--ttt", "2", "--threads", "1"]
    assert train([*args, "--features", str(tmp / "v2"), "--steps", "2", "--run-dir", str(tmp / "r")]) == 0
    assert json.loads((tmp / "h" / "config.json").read_text())["draft_vocab_size"] == 16


def test_a_tail_unlike_the_cache_is_refused(base, monkeypatch, capsys):
    import tools.train.revocab as rv

    tgt, tmp = base
    start = rv.Tail.__init__

    def one_layer_late(self, target, s):  # the residual read as the next layer's input
        start(self, target, s + 1)

    monkeypatch.setattr(rv.Tail, "__init__", one_layer_late)
    with pytest.raises(SystemExit):
        revocab(tgt, tmp / "feats", tmp / "v2", "--draft-vocab", "16")
    assert "do not give the cache's recorded distribution" in capsys.readouterr().err
    assert not list((tmp / "v2").glob("labels_*.pt"))


def test_a_stopped_run_goes_on(base, capsys):
    from tools.train.features import FeatureCache

    tgt, tmp = base
    assert revocab(tgt, tmp / "feats", tmp / "v2", "--draft-vocab", "16") == 0
    labels = sorted((tmp / "v2").glob("labels_*.pt"))
    assert len(labels) == 3
    labels[1].unlink()
    part = FeatureCache(tmp / "v2")
    assert len(part) == 4 and part.bad == ["shard_00001.pt (not labelled yet)"]
    capsys.readouterr()
    assert revocab(tgt, tmp / "feats", tmp / "v2", "--draft-vocab", "16") == 0
    assert "2 of 3 shards already labelled; 1 to do" in capsys.readouterr().out
    assert len(FeatureCache(tmp / "v2")) == 6
    with pytest.raises(SystemExit):  # another vocabulary into the same directory
        revocab(tgt, tmp / "feats", tmp / "v2", "--draft-vocab", "12")


def test_bad_input_gets_a_message(base, tmp_path, capsys):
    """Bad options end with one line, before any label is written: no vocabulary or both, a --vocab
    file that is missing or not a vocab.json, --out the base itself."""
    tgt, tmp = base
    (tmp / "bad.json").write_text('{"ids": [1, 2]}')
    for extra, msg in (
        ([], "give one of --draft-vocab"),
        (["--draft-vocab", "8", "--vocab", str(tmp / "bad.json")], "give one of --draft-vocab"),
        (["--vocab", str(tmp / "missing.json")], "not a vocab.json"),
        (["--vocab", str(tmp / "bad.json")], "not a vocab.json"),
    ):
        with pytest.raises(SystemExit):
            revocab(tgt, tmp / "feats", tmp / "v2", *extra)
        assert msg in capsys.readouterr().err
    with pytest.raises(SystemExit):
        revocab(tgt, tmp / "feats", tmp / "feats", "--draft-vocab", "8")
    assert "another directory" in capsys.readouterr().err
    assert not list(tmp.glob("v2/labels_*.pt"))


def test_image_samples_are_refused(tmp_path):
    tgt = load("llava")
    tiny_image().save(tmp_path / "img.png")
    write(tmp_path / "data.jsonl", [{"image": "img.png", "prompt": "Describe it.", "answer": "a red square"}])
    assert features(tgt, tmp_path / "data.jsonl", tmp_path / "feats", "--draft-vocab", "20", "--vocab-samples", "1") == 0
    with pytest.raises(SystemExit):
        revocab(tgt, tmp_path / "feats", tmp_path / "v2", "--draft-vocab", "10")
