"""Training pipeline end to end on tiny models: distillation data, MSD head, EAGLE-layout loading."""

import json

import pytest
import torch

from core import adapters
from core.drafters import DraftSpec, MSDHead, make_drafter
from core.drafters.msd import MSDDrafter, _read_weights, is_msd_dir
from core.engine import generate
from tools.train import common
from tools.tiny import tiny_image, tiny_model_dir


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rows = []
    for i in range(3):
        tiny_image(seed=i).save(d / f"im{i}.png")
        rows.append({"image": f"im{i}.png", "prompt": f"describe picture {i}"})
    rows.append({"image": None, "prompt": "say hello"})
    (d / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d / "prompts.jsonl"


def test_distill_then_msd_training_end_to_end(prompts_file, tmp_path):
    from tools.train import distill, msd

    tgt_dir = tiny_model_dir("llava")
    out = tmp_path / "distill.jsonl"
    distill.main(["--target", tgt_dir, "--prompts", str(prompts_file), "--out", str(out), "--max-new-tokens", "8"])
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 4 and all(isinstance(r["answer"], str) for r in rows)
    # resumable: a second call adds nothing
    distill.main(["--target", tgt_dir, "--prompts", str(prompts_file), "--out", str(out)])
    assert len(out.read_text().splitlines()) == 4
    for r in rows:  # answers must be non-empty to train on; tiny random models may emit only specials
        r["answer"] = r["answer"] or "hello"
    out.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    head_dir = tmp_path / "head"
    msd.main(
        [
            "--target",
            tgt_dir,
            "--data",
            str(out),
            "--out",
            str(head_dir),
            "--steps",
            "3",
            "--batch",
            "2",
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    assert is_msd_dir(str(head_dir))
    tgt = adapters.load(tgt_dir)
    d = make_drafter(str(head_dir), tgt)
    assert isinstance(d, MSDDrafter)
    img = tiny_image()
    ref = generate(tgt, "describe", img, max_new_tokens=12).output
    for spec in (DraftSpec("chain", gamma=3), DraftSpec("dynamic", depth=3, top_k=3, budget=8)):
        assert generate(tgt, "describe", img, d, spec, max_new_tokens=12).output == ref
    # warm start from the trained head (e.g. after the target was grown / fine-tuned)
    head2 = tmp_path / "head2"
    msd.main(
        [
            "--target",
            tgt_dir,
            "--data",
            str(out),
            "--out",
            str(head2),
            "--steps",
            "0",
            "--batch",
            "2",
            "--run-dir",
            str(tmp_path / "run2"),
            "--init",
            str(head_dir),
            "--minutes",
            "0",
        ]
    )
    a = _read_weights(str(head_dir))
    b = _read_weights(str(head2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit):
        msd.main(["--target", tgt_dir, "--out", str(head2), "--init", str(tmp_path)])


def test_msd_training_on_scenes_curriculum_steps(tmp_path):
    from tools.train.msd import curriculum

    assert curriculum(0.1) == 0.0 and curriculum(0.49) == 0.0
    assert 0.0 < curriculum(0.75) < 1.0 and curriculum(1.0) == 1.0
    assert curriculum(0.1, text_frac=0.0) > 0.0 and curriculum(0.2, text_frac=0.2) == 0.0
    assert curriculum(0.6, text_frac=0.2) == pytest.approx(0.5) and curriculum(0.9, text_frac=1.0) == 0.0


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_released_eagle_layout_head_loads(tmp_path, family):
    """A randomly initialised checkpoint in the EAGLE / released-MSD layout (pytorch_model.bin with
    fc.*, layers.0.*, embed_tokens.*; LlamaConfig) loads as a drafter and stays lossless."""
    tgt = adapters.load(tiny_model_dir(family))
    tc = getattr(tgt.model.config, "text_config", None) or tgt.model.config
    torch.manual_seed(3)
    head = MSDHead(MSDHead.make_config(tc))
    sd = {k: v for k, v in head.state_dict().items() if not k.startswith("rotary.")}
    sd["embed_tokens.weight"] = torch.zeros(tc.vocab_size, tc.hidden_size)  # EAGLE ships these
    torch.save(sd, tmp_path / "pytorch_model.bin")
    cfg = head.config.to_dict()
    cfg["architectures"] = ["LlamaForCausalLM"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert is_msd_dir(str(tmp_path))
    d = make_drafter(str(tmp_path), tgt)
    assert torch.equal(d.head.fc.weight, head.fc.weight)
    assert isinstance(d.head.layers[0].input_layernorm, torch.nn.RMSNorm) or type(d.head.layers[0].input_layernorm).__name__.endswith(
        "RMSNorm"
    )  # ours: kept
    img = tiny_image()
    ref = generate(tgt, "what is it", img, max_new_tokens=10).output
    assert generate(tgt, "what is it", img, d, DraftSpec("tree", branching=(2, 2)), max_new_tokens=10).output == ref


def test_small_drafter_training_runs(tmp_path):
    from tools.train import small

    proc = tmp_path / "proc"
    from tools.train.target import build_processor
    from tools.train.tokenizer import build_tokenizer
    from tools.scenes.tasks import corpus

    build_processor(build_tokenizer(corpus(300), vocab_size=400)).save_pretrained(proc)
    for kind in ("text-lm", "small-vlm"):
        small.main(["--kind", kind, "--out", str(tmp_path / kind), "--processor", str(proc), "--steps", "2", "--batch", "2"])
        assert (tmp_path / kind / "config.json").exists()
    tgt = adapters.load(str(tmp_path / "small-vlm"))  # loads through the engine like any model
    assert tgt.is_multimodal
    # continue it (as after grid pretraining) on target answers with its vision tower frozen
    from transformers import LlavaForConditionalGeneration

    rows = tmp_path / "distill.jsonl"
    rows.write_text(json.dumps({"seed": 3, "task": "count", "prompt": "p", "answer": "There are 2 shapes."}) + "\n")
    small.main(
        [
            "--kind",
            "small-vlm",
            "--init",
            str(tmp_path / "small-vlm"),
            "--out",
            str(tmp_path / "svlm2"),
            "--processor",
            str(proc),
            "--steps",
            "2",
            "--batch",
            "2",
            "--distill",
            str(rows),
            "--freeze-vision",
            "--lr",
            "1e-2",
        ]
    )
    a = LlavaForConditionalGeneration.from_pretrained(str(tmp_path / "small-vlm")).state_dict()
    b = LlavaForConditionalGeneration.from_pretrained(str(tmp_path / "svlm2")).state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and not any("vision_tower" in k for k in changed)
    assert any("language_model" in k for k in changed)


def test_eagle1_head_without_input_norm_and_fc_bias(tmp_path):
    """Real EAGLE-1/2 and MSD checkpoints have no ``layers.0.input_layernorm`` (their first layer
    skips it) and may have no fc bias: the head must then skip the norm, not use a fresh one."""
    tgt = adapters.load(tiny_model_dir("llava"))
    tc = tgt.model.config.text_config
    torch.manual_seed(4)
    head = MSDHead(MSDHead.make_config(tc))
    sd = {k: v for k, v in head.state_dict().items() if not k.startswith(("rotary.", "layers.0.input_layernorm", "fc.bias"))}
    torch.save(sd, tmp_path / "pytorch_model.bin")
    cfg = head.config.to_dict()
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    loaded = MSDHead.load(str(tmp_path))
    assert isinstance(loaded.layers[0].input_layernorm, torch.nn.Identity) and loaded.fc.bias is None
    # the layer output equals attention/MLP applied to the UN-normalised fused input
    x = torch.randn(1, 3, tc.hidden_size)
    pos = torch.arange(3).view(1, -1)
    ref_layer = head.layers[0]
    ref_layer.input_layernorm = torch.nn.Identity()
    ref = ref_layer(x, position_ids=pos, position_embeddings=head.rotary(x, pos))
    ref = ref[0] if isinstance(ref, tuple) else ref
    out = loaded(x, pos, None)
    assert torch.allclose(out, ref, atol=1e-5)
    d = make_drafter(str(tmp_path), tgt)
    img = tiny_image()
    ref_ids = generate(tgt, "what is it", img, max_new_tokens=10).output
    assert generate(tgt, "what is it", img, d, DraftSpec("dynamic", depth=3, top_k=2, budget=6), max_new_tokens=10).output == ref_ids


@pytest.mark.parametrize("kv_heads", [None, 1])
def test_msd_head_fast_step_equals_the_hf_layer(kv_heads):
    """MSDHead.step (plain torch, tensor KV cache) computes exactly what the HF decoder layer with a
    DynamicCache computes: prefix, then a masked block of tree nodes."""
    from transformers import DynamicCache

    tgt = adapters.load(tiny_model_dir("llava"))
    over = {} if kv_heads is None else {"num_key_value_heads": kv_heads}
    torch.manual_seed(5)
    head = MSDHead(MSDHead.make_config(tgt.model.config.text_config, **over)).eval()
    H = head.config.hidden_size
    x1, x2 = torch.randn(1, 6, H), torch.randn(1, 3, H)
    causal = torch.full((6, 6), float("-inf")).triu(1).view(1, 1, 6, 6)
    allow = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 0, 0, 1]], dtype=torch.bool)
    tree = torch.zeros(3, 9).masked_fill(~allow, float("-inf")).view(1, 1, 3, 9)
    pos1, pos2 = torch.arange(6).view(1, -1), torch.tensor([[6, 7, 6]])
    with torch.no_grad():
        cache = DynamicCache()
        ref = [head(x1, pos1, causal, cache), head(x2, pos2, tree, cache)]
        kv = [None, None]
        out = [head.step(x1, pos1, causal, kv), head.step(x2, pos2, tree, kv)]
    for a, b in zip(ref, out):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert kv[0].shape[2] == 9


def test_grid_labels_match_the_rendered_scene():
    """Every image token's auxiliary label is the content of the 3x3 cell its patch lies in."""
    from tools.scenes.generator import COLORS
    from tools.scenes.tasks import make_sample
    from tools.train.common import IMAGE_TOKENS, _aux_vocab, grid_labels, patch_cells

    voc = _aux_vocab()
    cells = patch_cells()
    assert len(cells) == IMAGE_TOKENS and set(cells) == {(r, c) for r in range(3) for c in range(3)}
    seen_word = seen_empty = 0
    for seed in range(40):
        s = make_sample(seed, task="describe")
        lab = grid_labels(s["meta"])
        px = s["image"].load()
        objs = {(o["row"], o["col"]): o for o in s["meta"]["scene"]["objects"]}
        for k, rc in enumerate(cells):
            kind = voc["kind"][lab["kind"][k]]
            if rc in objs:
                o = objs[rc]
                assert (kind, voc["color"][lab["color"][k]], voc["size"][lab["size"][k]]) == (o["shape"], o["color"], o["size"])
            elif kind == "word":
                seen_word += 1
                assert voc["word"][lab["word"][k]] == s["meta"]["scene"]["word"]
            else:
                seen_empty += 1
                assert kind == "empty" and lab["color"][k] == 0 and lab["word"][k] == 0
        # the object's colour is drawn near the centre of its labelled cell
        for (r, c), o in objs.items():
            cy, cx = int((r + 0.5) * 128 / 3), int((c + 0.5) * 128 / 3)
            near = {px[x, y] for x in range(cx - 12, cx + 13) for y in range(cy - 12, cy + 13)}
            assert COLORS[o["color"]] in near
    assert seen_word and seen_empty


def test_target_training_with_grid_loss_saves_a_plain_llava(tmp_path):
    """A few steps of the target trainer (continuing the shipped target) with the auxiliary grid
    loss: the loss is logged, and the saved model is a standard LLaVA without the aux heads."""
    from safetensors import safe_open

    from tools.train import target

    out, run = tmp_path / "out", tmp_path / "run"
    target.main(
        [
            "--init",
            "assets/target",
            "--out",
            str(out),
            "--run-dir",
            str(run),
            "--steps",
            "3",
            "--warmup",
            "2",
            "--batch",
            "4",
            "--threads",
            "1",
        ]
    )
    log = (run / "log.txt").read_text()
    assert "aux_acc kind" in log
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("heads" in k for k in keys)
    ck = torch.load(run / "ckpt.pt", weights_only=False)
    assert ck["aux"] and ck["step"] == 3
    assert (out / "grid_heads.pt").exists()  # a later --init out continues with the same heads
    tgt = adapters.load(str(out))
    assert tgt.is_multimodal


def test_focus_weights_and_the_weighted_loss():
    """Tally-style samples mark their decisions; the weighted loss puts ``--focus-weight`` on the
    tokens of those spans and equals the model's own mean loss when every weight is 1."""
    from tools.scenes.tasks import make_sample
    from tools.train import target
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained("assets/target")
    smp = next(
        x for x in (make_sample(s, "count", style="tally") for s in range(100)) if x["meta"]["kind"] == "color" and x["meta"]["number"] >= 1
    )
    n = len(tok(smp["answer"], add_special_tokens=False)["input_ids"]) + 1
    w = common.focus_weights(tok, smp, n, 5.0)
    assert len(w) == n and set(w) == {1.0, 5.0} and w[-1] == 1.0  # eos is not a decision
    marked = tok.decode([t for t, x in zip(tok(smp["answer"], add_special_tokens=False)["input_ids"], w) if x == 5.0])
    assert f"the first {smp['meta']['color']} shape" in marked and "There" in marked
    assert common.focus_weights(tok, make_sample(3, "describe"), 7, 5.0) == [1.0] * 7
    batch = common.collate(tok, None, [make_sample(5, "text"), make_sample(9, "text")], focus_weight=3.0)
    assert set(batch["loss_weights"][batch["labels"] != -100].tolist()) == {1.0}
    assert (batch["loss_weights"][batch["labels"] == -100] == 0).all()
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, 3, 4, 5, -100, -100], [-100, -100, 1, 2, 3, 7]])
    ones = torch.ones(2, 6)
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    assert torch.allclose(target.weighted_lm_loss(logits, labels, ones), ref)
    heavy = ones.clone()
    heavy[1, 5] = 100.0  # the loss moves towards the heavily weighted token's
    ce_last = torch.nn.functional.cross_entropy(logits[1, 4:5], labels[1, 5:6])
    got = target.weighted_lm_loss(logits, labels, heavy)
    assert abs(got - ce_last) < abs(ref - ce_last)


def test_target_training_in_tally_style_with_focus_weight(tmp_path):
    from tools.train import target

    out, run = tmp_path / "out", tmp_path / "run"
    target.main(
        [
            "--init",
            "assets/target",
            "--out",
            str(out),
            "--run-dir",
            str(run),
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batch",
            "4",
            "--threads",
            "1",
            "--answer-style",
            "tally",
            "--focus-weight",
            "4",
            "--task-weights",
            "count=0.4,spatial=0.4,lookup=0.2",
        ]
    )
    log = (run / "log.txt").read_text()
    assert "answers tally focus weight 4.0" in log and "step 2 " in log
    assert (out / "model.safetensors").exists()
    for bad in (["--focus-weight", "0"], ["--focus-weight", "-1"], ["--answer-style", "essay"]):
        with pytest.raises(SystemExit):
            target.main(["--init", "assets/target", "--out", str(out), "--run-dir", str(run), "--steps", "1", *bad])


def test_count_labels_and_the_count_loss(tmp_path):
    from tools.scenes.generator import COLOR_NAMES, SHAPES
    from tools.scenes.tasks import make_sample
    from tools.train import target

    s = make_sample(12, "describe")
    objs = s["meta"]["scene"]["objects"]
    lab = common.count_labels(s["meta"])
    assert sum(lab[: len(COLOR_NAMES)]) == len(objs) == sum(lab[len(COLOR_NAMES) : len(COLOR_NAMES) + len(SHAPES)])
    assert lab[COLOR_NAMES.index(objs[0]["color"])] >= 1
    out, run = tmp_path / "out", tmp_path / "run"
    target.main(
        [
            "--init",
            "assets/target",
            "--out",
            str(out),
            "--run-dir",
            str(run),
            "--steps",
            "3",
            "--warmup",
            "2",
            "--batch",
            "4",
            "--threads",
            "1",
            "--count-weight",
            "0.5",
        ]
    )
    assert "counts" in (run / "log.txt").read_text()
    assert torch.load(run / "ckpt.pt", weights_only=False)["counts"]
    assert (out / "count_heads.pt").exists()
    with pytest.raises(SystemExit):
        target.main(
            [
                "--init",
                "assets/target",
                "--out",
                str(out),
                "--run-dir",
                str(run),
                "--steps",
                "1",
                "--aux-weight",
                "0",
                "--count-weight",
                "0.5",
            ]
        )


def test_grid_pretrain_trains_only_the_vision_side(tmp_path):
    """Stage 0: a few steps change the vision tower / projector, never the language model, and
    the target trainer picks up the saved grid heads."""
    from transformers import LlavaForConditionalGeneration

    from tools.train import grid_pretrain, target

    out = tmp_path / "grid"
    grid_pretrain.main(
        [
            "--init",
            "assets/target",
            "--out",
            str(out),
            "--steps",
            "3",
            "--pool",
            "32",
            "--batch",
            "8",
            "--refresh",
            "4",
            "--threads",
            "1",
            "--lr",
            "1e-2",
            "--warmup",
            "1",
        ]
    )
    a = LlavaForConditionalGeneration.from_pretrained("assets/target").state_dict()
    b = LlavaForConditionalGeneration.from_pretrained(str(out)).state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert any("vision_tower" in k for k in changed) and any("multi_modal_projector" in k for k in changed)
    assert not any("language_model" in k or "lm_head" in k for k in changed)
    assert (out / "grid_heads.pt").exists()
    run = tmp_path / "run"
    target.main(["--init", str(out), "--out", str(tmp_path / "t"), "--run-dir", str(run), "--steps", "1", "--batch", "2", "--threads", "1"])
    assert "grid heads from" in (run / "log.txt").read_text()


@pytest.mark.parametrize("module", ["target", "grid_pretrain"])
def test_training_clis_reject_a_missing_init_dir(module, tmp_path, capsys):
    import importlib

    mod = importlib.import_module(f"tools.train.{module}")
    with pytest.raises(SystemExit) as e:
        mod.main(["--init", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--steps", "1"])
    assert e.value.code == 2
    assert "is not a saved model directory" in capsys.readouterr().err


def test_task_weights_and_seed_offset_shape_the_training_stream():
    """--task-weights / --seed-offset: the stream draws only the named tasks, from fresh seeds."""
    from transformers import AutoProcessor

    from tools.scenes.tasks import make_sample
    from tools.train import target

    w = target.parse_task_weights("count=1,spatial=0.5")
    assert w == {"count": 1.0, "spatial": 0.5}
    proc = AutoProcessor.from_pretrained("assets/target")
    seen = []
    orig = target.collate

    def spy(tok, ip, samples, *a, **k):
        seen.extend(samples)
        return orig(tok, ip, samples, *a, **k)

    target.collate = spy
    try:
        target.BucketedStream(proc.tokenizer, proc.image_processor, 4, group=2, seed_offset=777, weights=w).get(0)
    finally:
        target.collate = orig
    assert seen and {s["task"] for s in seen} <= {"count", "spatial"}
    # the offset really moves the seeds: the first batch is built from seeds 777..784
    firsts = {make_sample(777 + i, weights=w)["prompt"] for i in range(8)}
    assert {s["prompt"] for s in seen} <= firsts


@pytest.mark.parametrize("spec", ["count=x", "nosuch=1", "count=0", "count=-1"])
def test_bad_task_weights_are_refused(spec, tmp_path, capsys):
    from tools.train import target

    with pytest.raises(SystemExit) as e:
        target.main(["--task-weights", spec, "--out", str(tmp_path / "o"), "--steps", "1"])
    assert e.value.code == 2
    assert "--task-weights" in capsys.readouterr().err


def test_seed_offset_cannot_reach_the_held_out_split(tmp_path, capsys):
    from tools.scenes.generator import HELDOUT_START
    from tools.train import target

    with pytest.raises(SystemExit) as e:
        target.main(["--seed-offset", str(HELDOUT_START), "--out", str(tmp_path / "o"), "--steps", "1"])
    assert e.value.code == 2
    assert "held-out" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--init", "NOPE"], "is not a saved model directory"),
        (["--distill", "NOPE.jsonl"], "--distill: no such file"),
    ],
)
def test_small_drafter_cli_refuses_missing_inputs(extra, message, tmp_path, capsys):
    from tools.train import small

    extra = [str(tmp_path / e) if e.startswith("NOPE") else e for e in extra]
    with pytest.raises(SystemExit) as e:
        small.main(["--kind", "small-vlm", "--out", str(tmp_path / "o"), "--steps", "1", *extra])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_grow_keeps_the_function_and_the_trainer_keeps_the_architecture(tmp_path):
    """tools.train.grow: a deeper / wider target computes the same logits (float32, exactly: the
    inserted layers and MLP units write zeros into the residual stream); `tools.train.target
    --init grown` trains it with its own architecture, not the preset's."""
    from transformers import LlavaForConditionalGeneration

    from tools.train import grow, target
    from tools.tiny import build_inputs

    d = tiny_model_dir("llava")
    src = LlavaForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
    n_old = src.config.text_config.num_hidden_layers
    big = grow.grow(src, layers=n_old * 2 + 1, intermediate=src.config.text_config.intermediate_size + 16)
    assert big.config.text_config.num_hidden_layers == n_old * 2 + 1
    inputs = build_inputs("llava", d, "what is this?", image=tiny_image())
    with torch.no_grad():
        a = src(**inputs).logits
        b = big(**inputs).logits
    assert torch.equal(a, b)
    # the copies are real layers: their output projections are zero, their inputs are not
    layers = big.model.language_model.layers
    assert float(layers[1].self_attn.o_proj.weight.detach().abs().sum()) == 0.0
    assert float(layers[1].self_attn.q_proj.weight.detach().abs().sum()) > 0.0
    with pytest.raises(ValueError):
        grow.grow(src, layers=n_old - 1)
    assert grow.insert_positions(6, 9) == [0, 1, 1, 2, 3, 3, 4, 5, 5]
    assert grow.insert_positions(3, 7) == [0, 0, 1, 1, 2, 2, 2]

    out = tmp_path / "grown"
    n_shipped = adapters.load("assets/target").model.config.text_config.num_hidden_layers
    grow.main(["--init", "assets/target", "--out", str(out), "--layers", str(n_shipped + 1)])
    assert (out / "grid_heads.pt").exists() and (out / "tokenizer.json").exists()
    trained, run = tmp_path / "trained", tmp_path / "run"
    target.main(
        [
            "--init",
            str(out),
            "--out",
            str(trained),
            "--run-dir",
            str(run),
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batch",
            "2",
            "--threads",
            "1",
        ]
    )
    tgt = adapters.load(str(trained))
    assert tgt.model.config.text_config.num_hidden_layers == n_shipped + 1
    assert f"{n_shipped + 1} layers" in (trained / "TRAINING.md").read_text()
    with pytest.raises(SystemExit):
        grow.main(["--init", "assets/target", "--out", str(out), "--layers", "3"])
    with pytest.raises(SystemExit):  # a text-only model is not a LLaVA: a clear argparse error
        grow.main(["--init", "assets/drafters/text_lm", "--out", str(out), "--layers", "3"])


def test_target_trainer_refuses_an_init_of_another_architecture(tmp_path, capsys):
    """A text-only llama dir as --init would be wrapped in a default LLaVA with only a warning."""
    from tools.train import target

    with pytest.raises(SystemExit) as e:
        target.main(["--init", "assets/drafters/text_lm", "--out", str(tmp_path / "o"), "--run-dir", str(tmp_path / "r"), "--steps", "1"])
    assert e.value.code == 2 and "'llama' model" in capsys.readouterr().err


def test_drafter_training_samples_follow_the_targets_answer_style():
    """A tally-style target's drafters must learn tally answers, not the direct ones."""
    from tools.scenes.tasks import make_sample
    from tools.train.msd import SampleSource
    from tools.train.small import Stream

    for style in ("direct", "tally"):
        src = SampleSource("scenes", seed=3, style=style)
        got = [src.get(1.0) for _ in range(40)]
        src2 = SampleSource("scenes", seed=3, style="direct")
        ref = [src2.get(1.0) for _ in range(40)]
        same = [g["answer"] == r["answer"] for g, r in zip(got, ref)]
        assert all(same) if style == "direct" else not all(same)
        differs = []
        for s in Stream("small-vlm", style=style).batch(40, distilled=False):
            seed = s["meta"].get("scene", {}).get("seed")
            if seed is not None:
                assert s["answer"] == make_sample(seed, style=style)["answer"]
                differs.append(s["answer"] != make_sample(seed)["answer"])
        assert differs and any(differs) == (style == "tally")
    with pytest.raises(SystemExit):
        from tools.train import msd

        msd.main(["--answer-style", "essay"])
