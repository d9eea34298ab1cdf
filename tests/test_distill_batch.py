"""Batched self-distillation (tools/train/distill.py --batch N): the same greedy answers as one
prompt at a time with the engine, for prompts of different lengths (left padding), each row
stopping at its own EOS; rows with an image among them; resumable."""

import json

import torch

from core.engine import generate
from tools.tiny import adapter_cache, tiny_image, tiny_model_dir
from tools.train import distill

load = adapter_cache()
PROMPTS = [
    "hello",
    "Describe the picture of a red car on the street in detail please.",
    "count to three",
    "What color is the car? The car is red. How many people are in the picture?",
    "two words",
]


def test_batch_equals_one_at_a_time_and_eos_stops_each_row():
    torch.set_num_threads(1)
    tgt = load("qwen2")
    one = [generate(tgt, p, None, max_new_tokens=10, detail=False).output for p in PROMPTS]
    # an EOS the random model emits: the third token of the longest prompt's answer
    stop = one[1][2]
    saved = set(tgt.eos_ids)
    tgt.eos_ids = saved | {stop}
    try:
        ref = [generate(tgt, p, None, max_new_tokens=10, detail=False) for p in PROMPTS]
        texts, news = distill.greedy_batch(tgt, PROMPTS, 10)
    finally:
        tgt.eos_ids = saved
    assert news == [r.output for r in ref]
    assert texts == [r.text.strip() for r in ref]
    assert len(news[1]) == 3 and news[1][-1] == stop  # stopped at its EOS, the others went on
    assert max(len(x) for x in news) == 10


def test_cli_batch_equals_batch_one_keeps_order_and_resumes(tmp_path):
    torch.set_num_threads(1)
    tiny_image().save(tmp_path / "im.png")
    rows = [{"image": None, "prompt": p, "source": f"s{i}"} for i, p in enumerate(PROMPTS)]
    rows.insert(2, {"image": "im.png", "prompt": "Describe the picture.", "source": "img"})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--target", tiny_model_dir("llava"), "--prompts", str(tmp_path / "in.jsonl"), "--max-new-tokens", "8"]
    distill.main(common + ["--out", str(tmp_path / "one.jsonl")])
    distill.main(common + ["--out", str(tmp_path / "many.jsonl"), "--batch", "3", "--threads", "1"])
    one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    many = [json.loads(x) for x in (tmp_path / "many.jsonl").read_text().splitlines()]
    assert [r["source"] for r in one] == [r["source"] for r in rows]  # batch 1: input order
    assert sorted(many, key=lambda r: r["source"]) == sorted(one, key=lambda r: r["source"])  # extra fields kept
    assert all(r["answer"] for r in many)
    # resumable: the rows already written are skipped (a torn last line is cut), the rest decoded
    # again to the same answers
    lines = (tmp_path / "many.jsonl").read_text().splitlines()
    (tmp_path / "many.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    distill.main(common + ["--out", str(tmp_path / "many.jsonl"), "--batch", "3"])
    again = (tmp_path / "many.jsonl").read_text().splitlines()
    assert again[:3] == lines[:3] and sorted(again) == sorted(lines)
