import os
import sys
import tempfile

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# measured kernel paths and cost curves go to a per-session file, not the user's ~/.cache
os.environ.setdefault("SPECSCOPE_TUNING", os.path.join(tempfile.mkdtemp(prefix="specscope-tuning-"), "tuning.json"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one file per worker: a test reads back what its own process measured
    _t = os.environ["SPECSCOPE_TUNING"]
    os.environ["SPECSCOPE_TUNING"] = os.path.join(os.path.dirname(_t), f"{os.environ['PYTEST_XDIST_WORKER']}-{os.path.basename(_t)}")
# the compiled forward (core/compiled.py) costs a compile per target: tests/test_compiled.py turns it on
os.environ.setdefault("SPECSCOPE_COMPILE", "off")
torch.set_num_threads(1)  # tiny models: threads only add overhead


CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/test.sh installs it with apt)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SKIP_BROWSER = "SPECSCOPE_SKIP_BROWSER"  # =1: skip the browser tests on purpose


def browser_opted_out() -> bool:
    return os.environ.get(SKIP_BROWSER, "").strip().lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config, items):
    """SPECSCOPE_SKIP_BROWSER=1 skips the tests marked ``browser``; nothing else ever does.

    Files holding a test marked ``slow`` run first: with one file per worker (``--dist loadfile``)
    the files are handed out in this order, so a long file never starts last while the other worker
    idles (longest first packs two workers best)."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order within each part is kept
    if browser_opted_out():
        skip = pytest.mark.skip(reason=f"{SKIP_BROWSER}=1: the browser tests are skipped on request")
        for item in items:
            if item.get_closest_marker("browser"):
                item.add_marker(skip)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright (never `playwright install`); the browser tests'
    shared fixture. Without chromium or the playwright package the tests FAIL and say what is
    missing: a browser test that cannot run is not a pass. SPECSCOPE_SKIP_BROWSER=1 skips them."""
    how = f"or set {SKIP_BROWSER}=1 to skip the browser tests"
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium is not installed ({CHROMIUM}): apt-get install chromium (scripts/test.sh does), {how}", pytrace=False)
    try:
        from playwright import sync_api
    except ImportError as e:
        pytest.fail(f"the playwright package is missing ({e}): pip install -r requirements-dev.txt, {how}", pytrace=False)

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
