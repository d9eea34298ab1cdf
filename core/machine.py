"""What identifies a measurement: this machine (CPU model, threads), the weights it was taken
with, and the file where measured results are kept (tuned shapes, kernel paths, cost curves).

    tuning_path()                 ~/.cache/specscope/tuning.json (SPECSCOPE_TUNING to move it)
    update_tuning(fn)             read-modify-write of that file, locked and atomic
    machine_key(target, drafter)  "<cpu>|threads=N|<target>|<drafter>|<weights fingerprints>"
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from . import paths
from .errors import InputError


def tuning_path() -> Path:
    return Path(os.environ.get("SPECSCOPE_TUNING", Path.home() / ".cache" / "specscope" / "tuning.json"))


def tuned(section: str, key: str):
    """The tuning file's entry ``key`` of ``section`` (None where the file, the section or the entry
    is missing or the file unreadable): what an earlier process measured on this machine."""
    try:
        return json.loads(tuning_path().read_text()).get(section, {}).get(key)
    except (OSError, ValueError):
        return None


def update_tuning(change) -> bool:
    """Apply ``change(data)`` (it edits the dict in place) to the tuning file: under an exclusive
    lock (several processes measure at once: the app, a bench, test workers) and written to a
    temporary file renamed over the old one, so no reader ever sees half a file and no writer's
    entries are lost. False where the file cannot be written (a read-only home: measured again
    next time)."""
    path = tuning_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            with contextlib.suppress(ImportError, OSError):
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            change(data)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(data, indent=1))
            os.replace(tmp, path)
        return True
    except OSError:
        return False


def cheapest_per_token(times: dict):
    """The key of ``times`` ({choice: {rows: seconds}}) whose steps cost least per token they can
    yield, summed over the row counts: a step of n rows (one plain token, or a verify of n - 1 drafted
    tokens and its bonus) yields at most n tokens, so it weighs t_n / n. Plain decoding makes one
    token a step and every speculative step verifies several, so the one-row step weighs most, as it
    does in a decoding's time. A plain sum of seconds let the largest row count decide alone: the
    thirtieth session's Zen 5 kept the library's products on 0.187 s against rowdot_il's 0.188,
    1.12x slower at one row (plain decoding 13% slower end to end) and 1.17x faster at eight."""
    return min(times, key=lambda c: sum(t / int(n) for n, t in times[c].items()))


def competing_load() -> tuple[float, int] | None:
    """(the 1-minute load average, the cores this process may use) when the load exceeds those cores
    by more than half a core, i.e. other processes compete with decoding for them (a decoding's own
    threads count too, so up to its cores is its own); None otherwise or where no load average is
    kept."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return (load, cores) if load > cores + 0.5 else None


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.machine())
    except OSError:
        return platform.processor() or platform.machine()


def _local_dir(name: str, role: str) -> str | None:
    """The directory holding ``name``'s weights, when they are local (the default target, a
    shipped drafter, a model or head directory); None for Hub ids and weightless drafters."""
    if role == "target":
        name = str(paths.DEFAULT_TARGET) if not name or name == "default" else name
    else:
        from .drafters.names import parse_drafter  # here: core.drafters imports this module

        try:
            d = parse_drafter(name)
        except InputError:  # a malformed name has no weights to fingerprint
            return None
        name = d.ref if d is not None else ""
    return name if name and os.path.isdir(name) else None


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """Size + the first and last MiB: retrained weights change those bytes, and a 14 GB local
    checkpoint is not read whole when the app starts."""
    h = hashlib.sha1(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(size - (1 << 20))
        h.update(f.read(1 << 20))
    return h.hexdigest()


def weights_fingerprint(name: str, role: str) -> str:
    """A short hash of a local model's weight files ("" when there are none): a tuned shape is
    only valid for the weights it was measured with, and retraining keeps names and shapes."""
    d = _local_dir(name, role)
    if d is None:
        return ""
    h = hashlib.sha1()
    for f in sorted(Path(d).glob("*.safetensors")) + sorted(Path(d).glob("*.bin")):
        st = f.stat()
        h.update(f.name.encode() + _digest(str(f), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()[:12]


def machine_key(target: str, drafter: str) -> str:
    """Tuned shapes are per CPU, thread count, target and drafter, and per their weights."""
    where = os.path.abspath(target) if os.path.isdir(target) else target
    fp = f"{weights_fingerprint(target, 'target')}:{weights_fingerprint(drafter, 'drafter')}"
    return f"{cpu_name()}|threads={torch.get_num_threads()}|{where}|{drafter}|{fp}"
