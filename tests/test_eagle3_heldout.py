"""Held-out acceptance of EAGLE-3 heads (tools/train/heldout.py): its drafts are the engine's drafts
at the same positions, a chain counts to its first miss, and the trainer logs the curve
(``--heldout``) and keeps the last point in the head's config."""

import json

import pytest
import torch

from core.adapters import Encoded
from core.drafters import DraftSpec, make_drafter
from core.drafters.eagle3 import AuxTaps, new_head
from core.engine import generate
from tools.tiny import FAMILIES, adapter_cache, tiny_image

load = adapter_cache()
AUX = [2, 0, 1]


def features_of(tgt, enc, ids: torch.Tensor) -> dict:
    """What the feature cache keeps of one sample (``enc``: its encoded prompt, image included;
    ids: prompt + answer), taken live, float32."""
    taps = AuxTaps(tgt, AUX)
    try:
        full = Encoded(ids[None], enc.extra, enc.has_image)
        with torch.no_grad():
            sess, _, hidden = tgt.prefill(full, want_hidden=True)
            aux = taps.lookup(hidden).float().clone()
    finally:
        taps.remove()
    T, plen = ids.shape[0], enc.length
    return {
        "ids": ids,
        "aux": aux,
        "logits": None,
        "embeds": None if sess.embeds is None else sess.embeds[0].float().clone(),
        "prompt_len": plen,
        "topk_ids": torch.zeros(T - plen, 2, dtype=torch.long),
        "topk_p": torch.full((T - plen, 2), 0.5),
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_heldout_drafts_are_the_engines_drafts(family, tmp_path):
    """Decode with a random head (chain of 3; an image where the target takes one), then ask the tool
    for its drafts over each step's context followed by the chain the engine drafted there: at that
    position its drafts at every depth are the engine's (it fed the same tokens). Red with the rows
    read one position off."""
    from tools.train.heldout import chain_drafts

    tgt = load(family)
    img = tiny_image() if tgt.is_multimodal else None
    cfg = tgt.model.config
    image_token_id = getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)
    special = set(tgt.tokenizer.added_tokens_decoder)
    vocab = [t for t in range(tgt.vocab_size) if t % 3 and t not in special][::-1]
    head = new_head(tgt, draft_vocab=vocab, aux_layer_ids=AUX, seed=5)
    head.save(str(tmp_path / "h"))
    d = make_drafter(str(tmp_path / "h"), tgt, kernels="stock")
    tr = generate(tgt, "hello there", img, d, DraftSpec("chain", gamma=3), max_new_tokens=24)
    enc = tgt.encode("hello there", img)
    prompt = enc.input_ids[0]
    plen = prompt.shape[0]
    c = plen + 1  # the context's length at the first step: the prefill's token is in
    checked = 0
    for s in tr.steps[:8]:
        assert len(s.tokens) == 3
        # the step's root is the context's last token; its drafts stand for the next three
        ids = torch.cat([prompt, torch.tensor(tr.output[: c - plen]), torch.tensor(s.tokens)])
        starts, drafts = chain_drafts(d.head, tgt, features_of(tgt, enc, ids), 3, None, image_token_id)
        assert int(starts[-1]) == c - 2
        assert drafts[-1].tolist() == s.tokens, (c, drafts[-1].tolist(), s.tokens)
        checked += 1
        c += len(s.committed)
    assert checked == 8


class FakeCache:
    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def feats(self, i):
        return self.samples[i]


def test_a_chain_counts_to_its_first_miss(monkeypatch):
    """Hits per chain [1 0 1], [1 1 0], [0 1 1], [1 1 1]: runs 1, 2, 0, 3, so a mean accepted length
    of 2.5, accepted by position 3/4, 2/4, 1/4 and a top-1 of 3/4 at every step (red if the hits
    after a miss were counted: 3.25)."""
    import tools.train.heldout as ho

    hits = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=torch.bool)
    ids = torch.arange(10, 20)  # row t's step-j draft stands for ids[t + 2 + j]
    starts = torch.tensor([0, 1, 2, 3])
    truth = ids[starts[:, None] + 2 + torch.arange(3)]
    drafts = torch.where(hits, truth, -1)
    monkeypatch.setattr(ho, "chain_drafts", lambda *a, **k: (starts, drafts))
    head = new_head(load("llama"), draft_vocab=list(range(8)), aux_layer_ids=AUX)
    r = ho.chain_acceptance(head, None, FakeCache([{"ids": ids, "prompt_len": 1}]), steps=3)
    assert r["chains"] == 4 and r["mean_accepted_length"] == pytest.approx(2.5)
    assert r["accepted_by_position"] == [0.75, 0.5, 0.25]
    assert r["top1_per_step"] == [0.75, 0.75, 0.75]
    # the answer tokens its first drafts stand for: ids 12..15, of which the vocabulary (0..7) holds none
    assert r["in_vocabulary"] == 0.0
    head.set_vocab(torch.tensor([13, 14, 0, 1, 2, 3, 4, 5]))
    assert ho.chain_acceptance(head, None, FakeCache([{"ids": ids, "prompt_len": 1}]), steps=3)["in_vocabulary"] == 0.5
    # as decoding walks: the chain at row 0 (run 1), then row 2 (one past its accepted draft and the
    # bonus token: run 0), then row 3 (run 3): 1 + 4 / 3 (red with the bonus token not stepped over: 3.0)
    assert r["decoding_chains"] == 3 and r["decoding_mean_accepted_length"] == pytest.approx(1 + 4 / 3, abs=1e-4)


def test_the_decoding_walk_stops_at_max_new():
    """Runs 0 from every row: a decoding drafts from each row in turn, and with max_new 3 only the
    chains whose first draft stands for one of the first 3 answer tokens (rows 0 and 1 here, whose
    first drafts stand for answer tokens 1 and 2 with the prompt's last token at row 0)."""
    from tools.train.heldout import walk

    starts = torch.arange(5, 12)  # prompt of 6 tokens: row 5 drafts answer token 1 first
    zeros = torch.zeros(7, dtype=torch.long)
    assert walk(starts, zeros, 6) == [0] * 7
    assert walk(starts, zeros, 6, max_new=3) == [0, 0]
    assert walk(starts, torch.tensor([2, 9, 9, 1, 9, 0, 9]), 6) == [2, 1, 0, 9]


def test_training_logs_the_heldout_curve(tmp_path, capsys):
    """``--heldout``: a point before the first step, one at the end (kept in the head's config), and
    the command compares heads on the cache; a cache of another target's layers is refused."""
    from tools.train.__main__ import main
    from tools.train.features import main as features

    tgt = load("llama")
    rows = [{"image": None, "prompt": f"question {i}", "answer": f"the answer is {i} " * (i + 2)} for i in range(3)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, part in (("train", rows[:2]), ("held", rows[2:])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        args = ["--target", tgt.name, "--data", str(tmp_path / f"{name}.jsonl"), "--out", str(tmp_path / name)]
        args += ["--aux-layers", ",".join(map(str, AUX)), "--threads", "1", "--draft-vocab", "40", "--vocab-samples", "2"]
        assert features(args) == 0
    torch.set_num_threads(1)
    args = ["eagle3", "--target", tgt.name, "--features", str(tmp_path / "train"), "--out", str(tmp_path / "head")]
    args += ["--run-dir", str(tmp_path / "run"), "--batch", "2", "--ttt", "2", "--threads", "1", "--steps", "3"]
    assert main(args + ["--heldout", str(tmp_path / "held")]) == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    assert log.count("heldout step") == 2 and "heldout step 0 tokens 0 mean accepted length" in log
    cfg = json.loads((tmp_path / "head" / "config.json").read_text())
    held = cfg["specscope"]["heldout"]
    assert held["chains"] > 0 and 1.0 <= held["mean_accepted_length"] <= 3.0
    assert held["mean_accepted_length"] == pytest.approx(1 + sum(held["accepted_by_position"]), abs=1e-3)
    capsys.readouterr()
    out = tmp_path / "cmp.json"
    cmp = ["heldout", "--target", tgt.name, "--features", str(tmp_path / "held"), "--heads", str(tmp_path / "head")]
    assert main(cmp + ["--steps", "2", "--json", str(out)]) == 0
    assert "mean accepted length" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"][str(tmp_path / "head")]["chains"] == held["chains"]
    with pytest.raises(SystemExit):
        main(args + ["--heldout", str(tmp_path / "nowhere")])
    # bad input to the command: a message and exit status 2, never a traceback
    other = new_head(tgt, draft_vocab=list(range(8)), aux_layer_ids=[0, 1, 2])
    other.save(str(tmp_path / "other"))
    for bad, says in (
        (["--features", str(tmp_path / "nowhere")], "no feature cache"),
        (["--heads", str(tmp_path / "nowhere")], str(tmp_path / "nowhere")),
        (["--heads", ","], "no head directory"),
        (["--heads", str(tmp_path / "other")], "reads layers [0, 1, 2]"),
    ):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(cmp + bad)
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and "Traceback" not in err, (bad, err)
