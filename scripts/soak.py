#!/usr/bin/env python
"""Soak test of the SpecScope web app through its public ``/run`` endpoint.

N concurrent visitors (each its own gradio_client session) send a mix of good and bad requests
for M minutes; every request ends in one of four outcomes:

    completed   a good request decoded ("Done: ..."; also "Stopped" / "Time limit"); "edge" cases
                may end completed or refused
    refused     a bad request got a clear message (the page's error status, or Gradio's own
                message for a value outside a slider's range)
    busy        the queue was full ("Queue is full"): the visitor is told to retry
    failed      anything else: an exception without a clear message, the generic "Something went
                wrong" error, a good request refused, a bad request accepted, or no answer within
                the per-request timeout (a hang)

    python scripts/soak.py --url http://127.0.0.1:7860/ --visitors 10 --minutes 2 [--pid PID]
    python scripts/soak.py --launch [--target DIR] --visitors 10 --minutes 1
    python scripts/soak.py --launch [--target DIR] --sequential 50      # RSS after each of 50 runs
    python scripts/soak.py --launch --target tiny:llava ...              # the tests' tiny random LLaVA

Every request is built by input name from the app's own description of ``/run`` (gradio_client's
``view_api``), never from a positional list written here: the soak sets the inputs of
``soak_values()`` (plus the image and each case's own), every other input takes the app's default.
An input the soak sets that ``/run`` does not take, an input without a default that it does not
set, or outputs it cannot find (the status line first, one JSON result) stop it before anything is
sent ("API DRIFT", exit 1); an answer with another number of outputs than the API lists fails.
``tests/test_soak.py`` runs a bounded soak in the suite; docs/app.md documents the API.

``--launch`` starts ``app.py`` in a subprocess on a free port (``--target`` sets
SPECSCOPE_DEFAULT_TARGET, HF_HUB_OFFLINE=1 unless ``--online``, one torch thread) and stops it at
the end; its RSS (``/proc/<pid>/status`` VmRSS) is reported before and after. With ``--url``
give ``--pid`` of a local server to get RSS figures. Exit status: 0 when nothing failed, 1 when
something did (or RSS grew more than ``--max-rss-growth-mb``, when given), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERIC_ERROR = "Something went wrong on the server"
DONE_MARKERS = ("Done:", "Stopped by you", "Time limit reached")
OUTCOMES = ("completed", "refused", "busy", "failed")


# ====================================================================== server process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def fmt_mb(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} MB"


class Server:
    """``app.py`` in a subprocess on a free port; its log goes to a temp file."""

    def __init__(self, target: str | None, online: bool, threads: int, max_seconds: str | None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="specscope-soak-server-", suffix=".log", delete=False)
        env = dict(
            os.environ,
            GRADIO_SERVER_NAME="127.0.0.1",
            GRADIO_SERVER_PORT=str(self.port),
            GRADIO_ANALYTICS_ENABLED="False",
            SPECSCOPE_THREADS=str(threads),
        )
        if target and target.startswith("tiny:"):  # a tiny random model of tools/tiny.py
            sys.path.insert(0, str(ROOT))
            from tools.tiny import tiny_model_dir

            target = tiny_model_dir(target.split(":", 1)[1] or "llava")
        if target:
            env["SPECSCOPE_DEFAULT_TARGET"] = str(Path(target).resolve()) if os.path.isdir(target) else target
        if not online:
            env["HF_HUB_OFFLINE"] = "1"
        if max_seconds is not None:
            env["SPECSCOPE_MAX_SECONDS"] = max_seconds
        self.target = env.get("SPECSCOPE_DEFAULT_TARGET", "default")
        self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 180.0) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with code {self.proc.returncode}; log: {self.log.name}\n" + self.tail())
            if "SpecScope is running at" in Path(self.log.name).read_text(errors="replace"):
                return
            time.sleep(0.3)
        raise RuntimeError(f"the app did not start within {timeout:.0f} s; log: {self.log.name}\n" + self.tail())

    def tail(self, n: int = 15) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-n:])

    def log_summary(self) -> str:
        """Errors the app logged (its handlers' "unexpected error" path) and the tracebacks Gradio
        prints when it refuses an input itself (slider range, dropdown choices, file paths)."""
        lines = Path(self.log.name).read_text(errors="replace").splitlines()
        app_errors = sum(1 for line in lines if " ERROR specscope" in line)
        ends = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*:", line)]
        gradio = sum(1 for line in ends if line.startswith("gradio.exceptions."))
        return (
            f"{app_errors} unexpected error(s) logged by the app; {gradio} Gradio input refusal(s) with "
            f"traceback; {len(ends) - gradio} other exception(s)"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class RssMonitor(threading.Thread):
    """Samples the server's RSS every ``every`` seconds (peak)."""

    def __init__(self, pid: int | None, every: float = 0.5):
        super().__init__(daemon=True, name="rss-monitor")
        self.pid, self.every, self.peak = pid, every, None
        self._stop = threading.Event()

    def run(self):
        while not self._stop.wait(self.every):
            r = rss_mb(self.pid)
            if r is not None and (self.peak is None or r > self.peak):
                self.peak = r

    def stop(self):
        self._stop.set()


# ====================================================================== inputs
def make_files(tmp: Path) -> dict[str, str]:
    from PIL import Image

    rnd = random.Random(0)
    good = tmp / "good.png"
    Image.frombytes("RGB", (96, 80), bytes(rnd.randrange(256) for _ in range(96 * 80 * 3))).save(good)
    corrupt = tmp / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    truncated = tmp / "truncated.png"
    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 64), bytes(rnd.randrange(256) for _ in range(64 * 64 * 3))).save(buf, "PNG")
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    text = tmp / "notes.png"
    text.write_text("hello, I am not an image")
    empty = tmp / "empty.png"
    empty.write_bytes(b"")
    return {k: str(v) for k, v in dict(good=good, corrupt=corrupt, truncated=truncated, text=text, empty=empty).items()}


@dataclass
class Case:
    name: str
    good: bool | None  # expected: completed (True), refused (False), either (None)
    kw: dict = field(default_factory=dict)
    raw: str | None = None  # a raw HTTP body (for what gradio_client cannot send: NaN, server paths)
    image: str | None = "good"  # key of make_files, or None
    expect: str = ""  # a text the final message must contain
    heavy: bool = False  # a long run: not in the sequential memory check nor in the suite's soak


def cases() -> list[Case]:
    specials = "<image> USER: ASSISTANT: </s> <s> <|im_start|>assistant\n<|im_end|> <|image_pad|>"
    return [
        # ---- good: must complete
        Case("good: image, layerskip dynamic + baseline", True),
        Case("good: no image, n-gram chain", True, dict(drafter="ngram", strategy="chain"), image=None),
        Case("good: static tree 2,2,1", True, dict(strategy="tree", ar_baseline=False)),
        Case("good: plain decoding (no drafter)", True, dict(drafter="none")),
        Case("good: sampling T=0.8 top-p 0.9", True, dict(temperature=0.8, top_p=0.9, seed=7)),
        Case("good: which tokens need the image", True, dict(visual=True, max_new_tokens=6)),
        Case("good: emoji + other scripts", True, dict(prompt="Что на картинке? 図の説明 🐱🚀 مرحبا")),
        Case("good: control characters", True, dict(prompt="a\x1b[31mred\x07\x08 \u202e\u200b\ttab\r\nline")),
        Case("good: special-token strings in prompt", True, dict(prompt="Look " + specials)),
        # ---- either: completed, or refused with a clear message (depends on the model's context)
        Case(
            "capped: max_new_tokens 10^9 (512, with a note)",
            True,
            dict(max_new_tokens=10**9, ar_baseline=False),
            image=None,
            expect="capped at 512",
            heavy=True,
        ),
        Case("edge: 4,000-character prompt (the limit)", None, dict(prompt=("Describe the image. " * 200)[:4000], max_new_tokens=4)),
        # ---- bad: must be refused with a clear message
        Case("bad: empty prompt", False, dict(prompt="")),
        Case("bad: whitespace prompt", False, dict(prompt=" \n\t ")),
        Case("bad: 100k-character prompt", False, dict(prompt="x" * 100_000)),
        Case("bad: NaN temperature (raw JSON)", False, raw="nan_temperature"),
        Case("bad: Infinity gamma (raw JSON)", False, raw="inf_gamma"),
        Case("bad: server path /etc/passwd as image (raw)", False, raw="server_path"),
        Case("bad: negative gamma", False, dict(gamma=-3)),
        Case("bad: negative temperature", False, dict(temperature=-1)),
        Case("bad: max_new_tokens 0", False, dict(max_new_tokens=0)),
        Case("bad: repeats 0", False, dict(repeats=0)),
        Case("bad: seed -1", False, dict(seed=-1)),
        Case("bad: branching 0,2", False, dict(strategy="tree", branching="0,2")),
        Case("bad: corrupt image bytes", False, image="corrupt"),
        Case("bad: truncated PNG", False, image="truncated"),
        Case("bad: text file as image", False, image="text"),
        Case("bad: empty image file", False, image="empty"),
        Case("bad: unknown drafter id", False, dict(drafter="no-such-drafter")),
        Case("bad: custom drafter, unknown Hub id", False, dict(drafter="custom", custom_drafter="nobody-xyz/no-such-model-xyz")),
        Case("bad: custom drafter os:system", False, dict(drafter="custom", custom_drafter="os:system")),
        Case("bad: target /etc", False, dict(target="/etc")),
        Case("bad: target ../../etc", False, dict(target="../../etc")),
        Case("bad: unknown target", False, dict(target="not a model")),
    ]


ENDPOINT = "/run"


def soak_values(max_new: int) -> dict:
    """What the soak sets on every request, by input name; every other input of ``/run`` takes the
    app's own default (read from its API at run time, never from a list written here)."""
    return dict(
        prompt="Describe the image.",
        drafter="layerskip",
        custom_drafter="",
        mode="multimodal",
        dtype="float32",
        strategy="dynamic",
        gamma=3,
        branching="2,2,1",
        depth=3,
        top_k=3,
        budget=12,
        temperature=0,
        top_p=1,
        max_new_tokens=max_new,
        seed=0,
        ar_baseline=True,
        repeats=1,
    )


class ApiDrift(RuntimeError):
    """The soak and the app's API disagree: an input the soak sets that the endpoint does not take,
    an input without a default that the soak does not set, or outputs it cannot find."""


@dataclass
class RunApi:
    """The ``/run`` endpoint as the running app describes it (gradio_client's ``view_api``)."""

    names: list[str]  # the inputs, in the order the endpoint takes them
    defaults: dict  # input name -> the app's default (inputs without one are absent)
    outputs: list[str]  # the outputs' components, in order
    status_index: int  # the status line (the first output, HTML)
    result_index: int  # the raw result (the one JSON output)

    @classmethod
    def from_info(cls, info: dict, endpoint: str = ENDPOINT) -> RunApi:
        try:
            ep = info["named_endpoints"][endpoint]
        except (KeyError, TypeError):
            raise ApiDrift(f"the app has no {endpoint} endpoint") from None
        params = ep["parameters"]
        names = [p["parameter_name"] for p in params]
        defaults = {p["parameter_name"]: p["parameter_default"] for p in params if p.get("parameter_has_default")}
        outputs = [r.get("component", "") for r in ep["returns"]]
        if not outputs or outputs[0] != "Html":
            raise ApiDrift(f"{endpoint}: the first output is not the status line (HTML): {outputs}")
        json_outs = [i for i, c in enumerate(outputs) if c == "Json"]
        if len(json_outs) != 1:
            raise ApiDrift(f"{endpoint}: expected exactly one JSON output (the raw result), found {len(json_outs)}: {outputs}")
        return cls(names, defaults, outputs, 0, json_outs[0])

    @classmethod
    def fetch(cls, client, endpoint: str = ENDPOINT) -> RunApi:
        return cls.from_info(client.view_api(print_info=False, return_format="dict"), endpoint)

    def check(self, sent: set[str]) -> None:
        """Raise ApiDrift unless every name in ``sent`` is an input and every input without a
        default is in ``sent``."""
        unknown = sorted(set(sent) - set(self.names))
        if unknown:
            raise ApiDrift(
                f"the soak sets {unknown}, which {ENDPOINT} does not take (its {len(self.names)} inputs: {', '.join(self.names)})"
            )
        required = [n for n in self.names if n not in self.defaults and n not in sent]
        if required:
            raise ApiDrift(f"{ENDPOINT} requires {required}, which the soak does not set")

    def request(self, values: dict) -> dict:
        """Every input of the endpoint by name, in its order: ``values`` over the app's defaults."""
        self.check(set(values))
        return {n: values[n] if n in values else self.defaults[n] for n in self.names}

    def positional(self, values: dict) -> list:
        """The same as a positional list (a raw HTTP body's ``data``); its length is the endpoint's."""
        req = self.request(values)
        data = [req[n] for n in self.names]
        assert len(data) == len(self.names)
        return data

    def defaulted(self, values: dict) -> list[str]:
        """The inputs the soak leaves at the app's default (named in the report)."""
        return [n for n in self.names if n not in values]


def check_cases(api: RunApi, all_cases: list[Case], max_new: int) -> None:
    """Before any request: every input any case sets must be one the endpoint takes."""
    base = set(soak_values(max_new)) | {"image"}
    for c in all_cases:
        api.check(base | set(c.kw))


# ====================================================================== one request
@dataclass
class Record:
    case: str
    outcome: str
    seconds: float
    message: str


def strip_tags(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", str(s))).strip(" ⚠✓⏳")


def clear(msg: str) -> bool:
    """A message a visitor can act on: not empty, not the generic error, not a bare exception name."""
    m = msg.strip()
    return len(m) >= 12 and GENERIC_ERROR.lower() not in m.lower() and m.lower() not in ("error", "none")


def judge(case: Case, outcome: str, msg: str) -> tuple[str, str]:
    """Turn an observed outcome into the reported one: a mismatch with the case's expectation fails."""
    if outcome in ("busy", "failed"):
        return outcome, msg
    if outcome == "refused" and not clear(msg):
        return "failed", "unclear message: " + msg
    if case.good is True and outcome != "completed":
        return "failed", "good input refused: " + msg
    if case.good is False and outcome == "completed":
        return "failed", "bad input accepted: " + msg
    if case.expect and case.expect not in msg:
        return "failed", f"no {case.expect!r} in: {msg}"
    return outcome, msg


def call_client(client, api: RunApi, case: Case, files: dict, max_new: int, timeout: float) -> tuple[str, str]:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    values = soak_values(max_new)
    values["image"] = handle_file(files[case.image]) if case.image else None
    values.update(case.kw)
    job = client.submit(**api.request(values), api_name=ENDPOINT)
    try:
        out = job.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        job.cancel()
        return "failed", f"no answer within {timeout:g} s (hang)"
    except AppError as e:
        msg = str(e).strip()
        return ("busy" if "queue is full" in msg.lower() else "refused"), msg
    except Exception as e:
        msg = f"{type(e).__name__}: {e}".strip()
        if "queue is full" in msg.lower():
            return "busy", msg
        return "failed", msg
    if not isinstance(out, (list, tuple)) or len(out) != len(api.outputs):
        n = len(out) if isinstance(out, (list, tuple)) else 1
        return "failed", f"{n} outputs, the API lists {len(api.outputs)}"
    text = strip_tags(out[api.status_index])
    if any(m in text for m in DONE_MARKERS):
        result = out[api.result_index]
        if not isinstance(result, dict) or not result.get("token_ids"):
            return "failed", "finished without a result: " + text
        return "completed", text
    if "ss-status err" in str(out[api.status_index]):
        return "refused", text
    return "failed", "unrecognised final status: " + text


def call_raw(base: str, api: RunApi, case: Case, max_new: int, timeout: float) -> tuple[str, str]:
    """What a hand-written HTTP client can send and gradio_client cannot (NaN, a server-side path)."""
    import httpx

    values = soak_values(max_new)
    values["image"] = None
    markers = {"nan_temperature": ("temperature", "NaN"), "inf_gamma": ("gamma", "Infinity")}
    if case.raw in markers:
        name, literal = markers[case.raw]
        values[name] = "__RAW__"
        body = json.dumps({"data": api.positional(values)}).replace('"__RAW__"', literal)
    elif case.raw == "server_path":
        values["image"] = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
        body = json.dumps({"data": api.positional(values)})
    else:
        raise ValueError(f"unknown raw case {case.raw!r}")
    url = base.rstrip("/") + "/gradio_api/call" + ENDPOINT
    try:
        r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=timeout)
        if r.status_code == 503:
            return "busy", f"HTTP 503: {r.text[:200]}"
        if r.status_code != 200:
            return "refused" if clear(r.text) else "failed", f"HTTP {r.status_code}: {r.text[:200]}"
        eid = r.json()["event_id"]
        event, last = None, None
        with httpx.stream("GET", f"{url}/{eid}", timeout=timeout) as s:
            t_end = time.monotonic() + timeout
            for line in s.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    last = (event, line.split(":", 1)[1].strip())
                if time.monotonic() > t_end:
                    return "failed", f"no answer within {timeout:g} s (hang)"
    except httpx.TimeoutException:
        return "failed", f"no answer within {timeout:g} s (hang)"
    except Exception as e:
        return "failed", f"{type(e).__name__}: {e}"
    if last is None:
        return "failed", "empty event stream"
    event, payload = last
    try:
        payload = json.loads(payload)
    except ValueError:
        pass
    if event == "error":
        msg = payload.get("error") if isinstance(payload, dict) else str(payload)
        msg = str(msg or "").strip()
        return ("busy" if "queue is full" in msg.lower() else "refused"), msg
    if event == "complete" and isinstance(payload, list) and len(payload) >= len(api.outputs):  # + state, layout
        text = strip_tags(payload[api.status_index])
        if any(m in text for m in DONE_MARKERS):
            return "completed", text
        if "ss-status err" in str(payload[api.status_index]):
            return "refused", text
    return "failed", f"unexpected {event}: {str(payload)[:200]}"


def do_case(client, url: str, api: RunApi, case: Case, files: dict, max_new: int, timeout: float) -> Record:
    t0 = time.perf_counter()
    if case.raw:
        outcome, msg = call_raw(url, api, case, max_new, timeout)
    else:
        outcome, msg = call_client(client, api, case, files, max_new, timeout)
    outcome, msg = judge(case, outcome, msg)
    return Record(case.name, outcome, time.perf_counter() - t0, msg)


# ====================================================================== reports
def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def outcome_table(records: list[Record]) -> str:
    lines = [f"{'outcome':<34}{'count':>7}{'p50 s':>9}{'p95 s':>9}{'max s':>9}"]
    labels = {"completed": "completed", "refused": "refused with a clear message", "busy": "busy (queue full)", "failed": "failed"}
    for o in OUTCOMES:
        xs = [r.seconds for r in records if r.outcome == o]
        lines.append(f"{labels[o]:<34}{len(xs):>7}{fmt_s(pct(xs, 50)):>9}{fmt_s(pct(xs, 95)):>9}{fmt_s(max(xs) if xs else None):>9}")
    xs = [r.seconds for r in records]
    lines.append(f"{'all requests':<34}{len(xs):>7}{fmt_s(pct(xs, 50)):>9}{fmt_s(pct(xs, 95)):>9}{fmt_s(max(xs) if xs else None):>9}")
    return "\n".join(lines)


def case_table(records: list[Record], all_cases: list[Case]) -> str:
    lines = [f"{'case':<46}{'n':>4}{'done':>6}{'refused':>8}{'busy':>6}{'failed':>7}  example message"]
    for c in all_cases:
        rs = [r for r in records if r.case == c.name]
        if not rs:
            continue
        counts = {o: sum(r.outcome == o for r in rs) for o in OUTCOMES}
        example = next((r for r in rs if r.outcome == "failed"), rs[0]).message
        example = example.replace("\n", " ")
        example = example if len(example) <= 90 else example[:87] + "..."
        lines.append(
            f"{c.name:<46}{len(rs):>4}{counts['completed']:>6}{counts['refused']:>8}{counts['busy']:>6}{counts['failed']:>7}  {example}"
        )
    return "\n".join(lines)


# ====================================================================== modes
def soak(
    url: str,
    api: RunApi,
    visitors: int,
    seconds: float,
    max_new: int,
    timeout: float,
    files: dict,
    seed: int = 0,
    pid: int | None = None,
    case_list: list[Case] | None = None,
) -> tuple[list[Record], dict]:
    """``visitors`` concurrent sessions: every case at least once (spread over the visitors), then
    half good, half bad at random until ``seconds`` have passed; a warm-up request before and a good
    request after (the app must still answer)."""
    from gradio_client import Client

    all_cases = cases() if case_list is None else case_list
    check_cases(api, all_cases, max_new)
    first_good = next(c for c in all_cases if c.good is True)
    records: list[Record] = []
    lock = threading.Lock()
    mem: dict = {"start": rss_mb(pid)}

    warm_client = Client(url, verbose=False)
    warm = do_case(warm_client, url, api, first_good, files, max_new, timeout)
    mem["warm"] = rss_mb(pid)
    mem["warm_record"] = warm
    if warm.outcome != "completed":
        print(f"warning: the warm-up request did not complete: {warm.outcome}: {warm.message}", file=sys.stderr)

    mon = RssMonitor(pid)
    mon.start()
    t_end = time.monotonic() + seconds

    def visitor(i: int):
        rng = random.Random(seed * 1000 + i)
        try:
            client = Client(url, verbose=False)
        except Exception as e:
            with lock:
                records.append(Record("connect", "failed", 0.0, f"{type(e).__name__}: {e}"))
            return
        good = [c for c in all_cases if c.good is not False]
        bad = [c for c in all_cases if c.good is False]
        k = i
        while k < len(all_cases) or time.monotonic() < t_end:
            case = all_cases[k] if k < len(all_cases) else rng.choice(good if rng.random() < 0.5 else bad)
            k += visitors
            try:
                rec = do_case(client, url, api, case, files, max_new, timeout)
            except Exception as e:  # a bug in this script (or API drift) must not look like a pass
                rec = Record(case.name, "failed", 0.0, f"soak script error: {type(e).__name__}: {e}")
            with lock:
                records.append(rec)

    threads = [threading.Thread(target=visitor, args=(i,), name=f"visitor-{i}") for i in range(visitors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mon.stop()
    mem["peak"] = mon.peak
    # afterwards the app must still answer a good request
    after = do_case(Client(url, verbose=False), url, api, first_good, files, max_new, timeout)
    mem["end"] = rss_mb(pid)
    mem["after_ok"] = after.outcome == "completed"
    mem["after_msg"] = after.message
    return records, mem


def sequential(
    url: str,
    api: RunApi,
    n: int,
    max_new: int,
    timeout: float,
    files: dict,
    fresh_sessions: bool = False,
    pid: int | None = None,
) -> tuple[list[Record], list[float | None]]:
    """``n`` good requests one after the other (one session, or a new one each), RSS after each."""
    from gradio_client import Client

    good = [c for c in cases() if c.good is True and not c.raw and not c.heavy]
    check_cases(api, good, max_new)
    client = Client(url, verbose=False)
    records, rss = [], []
    start = rss_mb(pid)
    print(f"RSS before the first run: {fmt_mb(start)}")
    for i in range(n):
        case = good[i % len(good)]
        if fresh_sessions and i:
            client = Client(url, verbose=False)  # a new visitor (session) each run
        rec = do_case(client, url, api, case, files, max_new, timeout)
        records.append(rec)
        rss.append(rss_mb(pid))
        if i < 3 or (i + 1) % 5 == 0 or rec.outcome != "completed":
            print(
                f"run {i + 1:>3}  {rec.outcome:<9} {rec.seconds:6.2f} s  RSS {fmt_mb(rss[-1]):>10}  {case.name}"
                + ("" if rec.outcome == "completed" else f"  [{rec.message[:80]}]"),
                flush=True,
            )
    return records, [start] + rss


def slope(ys: list[float]) -> float:
    """Least-squares MB per run."""
    if len(ys) < 2:
        return 0.0
    xs = list(range(len(ys)))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Soak test of the SpecScope app's /run endpoint.")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running app, e.g. http://127.0.0.1:7860/")
    where.add_argument("--launch", action="store_true", help="start app.py in a subprocess on a free port")
    ap.add_argument(
        "--target",
        help="with --launch: SPECSCOPE_DEFAULT_TARGET (a model directory or Hub id; tiny:llava = the tiny random LLaVA of tools/tiny.py)",
    )
    ap.add_argument("--pid", type=int, help="with --url: the server's pid, for RSS figures")
    ap.add_argument("--visitors", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--sequential", type=int, metavar="N", help="instead: N sequential good runs, RSS after each")
    ap.add_argument("--fresh-sessions", action="store_true", help="with --sequential: a new visitor (gradio session) for every run")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="per good request (default 16)")
    ap.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds (default 120)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="with --launch: SPECSCOPE_THREADS (default 1)")
    ap.add_argument("--online", action="store_true", help="with --launch: do not set HF_HUB_OFFLINE=1")
    ap.add_argument("--max-seconds", help="with --launch: SPECSCOPE_MAX_SECONDS for the server")
    ap.add_argument("--max-rss-growth-mb", type=float, help="also fail when RSS grew more than this after warm-up")
    a = ap.parse_args(argv)
    if a.visitors < 1 or a.minutes <= 0 or (a.sequential is not None and a.sequential < 1):
        ap.error("--visitors, --minutes and --sequential must be positive")
    if a.target and not a.launch:
        ap.error("--target needs --launch (a running server has its own default target)")

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    server = None
    tmp = tempfile.TemporaryDirectory(prefix="specscope-soak-")
    try:
        files = make_files(Path(tmp.name))
        if a.launch:
            server = Server(a.target, a.online, a.threads, a.max_seconds)
            print(f"launching app.py (pid {server.pid}) on {server.url} with target {server.target} ...", flush=True)
            t0 = time.perf_counter()
            server.wait_ready()
            print(f"app up in {time.perf_counter() - t0:.1f} s; server log: {server.log.name}", flush=True)
            url, pid = server.url, server.pid
        else:
            url, pid = a.url, a.pid
        from gradio_client import Client

        try:  # the requests are built from the app's own description of /run, by input name
            api = RunApi.fetch(Client(url, verbose=False))
            check_cases(api, cases(), a.max_new_tokens)
        except ApiDrift as e:
            print(f"API DRIFT: {e}", file=sys.stderr)
            print("RESULT: FAIL (the soak and the app's API disagree; nothing was sent)")
            return 1
        target = api.defaults.get("target") or "default"
        left = [n for n in api.defaulted(soak_values(a.max_new_tokens)) if n not in ("image", "target")]
        print(
            f"{ENDPOINT}: {len(api.names)} inputs, {len(api.outputs)} outputs; target {target}; "
            f"left at the app's default: {', '.join(left) or 'none'}",
            flush=True,
        )

        if a.sequential:
            print(
                f"SpecScope sequential memory check: {a.sequential} good runs against {url}"
                f" (max_new_tokens {a.max_new_tokens}"
                f"{', a new session each run' if a.fresh_sessions else ', one session'})",
                flush=True,
            )
            records, rss = sequential(url, api, a.sequential, a.max_new_tokens, a.timeout, files, a.fresh_sessions, pid)
            print()
            print(outcome_table(records))
            ok = [r for r in rss if r is not None]
            failed = sum(r.outcome == "failed" for r in records)
            growth = None
            if len(ok) >= 3:
                warm, end = ok[1], ok[-1]  # after run 1 = warm (models loaded, first-use costs paid)
                growth = end - warm
                half = ok[len(ok) // 2 :]
                print(
                    f"\nserver RSS: before {fmt_mb(ok[0])}, after run 1 {fmt_mb(warm)}, after run {len(ok) - 1} "
                    f"{fmt_mb(end)}, max {fmt_mb(max(ok))}"
                )
                print(
                    f"RSS growth after warm-up (run 1 -> run {len(ok) - 1}): {growth:+.1f} MB "
                    f"({growth / max(1, len(ok) - 2):+.2f} MB/run); trend over the last {len(half)} runs: "
                    f"{slope(half):+.2f} MB/run"
                )
            else:
                print("\nserver RSS: n/a (give --pid of a local server, or use --launch)")
            bad = failed > 0 or (a.max_rss_growth_mb is not None and growth is not None and growth > a.max_rss_growth_mb)
        else:
            print(
                f"SpecScope soak: {a.visitors} visitors x {a.minutes:g} min against {url} "
                f"(max_new_tokens {a.max_new_tokens}, per-request timeout {a.timeout:g} s)",
                flush=True,
            )
            t0 = time.perf_counter()
            records, mem = soak(url, api, a.visitors, a.minutes * 60, a.max_new_tokens, a.timeout, files, a.seed, pid)
            wall = time.perf_counter() - t0
            print(f"\n{len(records)} requests in {wall:.0f} s ({len(records) / max(wall, 1e-9):.1f} per second)\n")
            print(case_table(records, cases()))
            print()
            print(outcome_table(records))
            growth = (mem["end"] - mem["warm"]) if mem["end"] is not None and mem["warm"] is not None else None
            print(
                f"\nserver RSS: before {fmt_mb(mem['start'])}, after warm-up {fmt_mb(mem['warm'])}, "
                f"peak {fmt_mb(mem['peak'])}, after {fmt_mb(mem['end'])}"
                + (f" ({growth:+.1f} MB since warm-up)" if growth is not None else "")
            )
            print(f"app answers a good request afterwards: {'yes' if mem['after_ok'] else 'NO: ' + mem['after_msg']}")
            failed = sum(r.outcome == "failed" for r in records)
            bad = (
                failed > 0
                or not mem["after_ok"]
                or (a.max_rss_growth_mb is not None and growth is not None and growth > a.max_rss_growth_mb)
            )
        if server is not None:
            print(f"server log: {server.log_summary()} ({server.log.name})")
        print("RESULT:", "FAIL" if bad else "PASS", f"({failed} failed)")
        return 1 if bad else 0
    finally:
        if server is not None:
            server.stop()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
