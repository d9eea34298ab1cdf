"""The app in a real browser: headless Chromium (Debian package) driven by Playwright.

Skipped when /usr/bin/chromium or the playwright package is missing. Never runs
`playwright install`: the system Chromium is used through ``executable_path``.
"""
from __future__ import annotations

import json
import os
import re
import time

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("chromium is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

from tests.app_server import served_app  # noqa: E402
from tests.tiny_models import tiny_image, tiny_model_dir  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SHOTS = os.environ.get("SPECSCOPE_SHOTS")          # set to a folder to keep screenshots


@pytest.fixture(scope="module")
def url():
    with served_app({"SPECSCOPE_DEFAULT_TARGET": tiny_model_dir("llava"), "HF_HUB_OFFLINE": "1"}) as (u, _, _):
        yield u


@pytest.fixture(scope="module")
def page(url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        pg = ctx.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(url)
        pg.wait_for_selector("text=SpecScope")
        pg.errors = errors
        yield pg
        browser.close()


def shot(page, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, name), full_page=True)


def tree_title(page, root="#ss-tree") -> str:
    return page.locator(f"{root} .gtitle").first.text_content() or ""


def test_run_in_the_browser(page, tmp_path):
    t0 = time.time()
    img = tmp_path / "upload.png"
    tiny_image(120, 90, 7).save(img)
    # replace the example image by an upload
    box = page.locator("#ss-image")
    clear = box.get_by_role("button", name=re.compile("clear", re.I))
    if clear.count():
        clear.first.click()
    box.locator("input[type=file]").set_input_files(str(img))
    page.wait_for_timeout(500)
    page.get_by_label("Prompt").first.fill("Describe the image in detail.")
    page.get_by_role("button", name="▶ Run").click()

    # coloured tokens and a tree plot appear, then the run finishes with the speedup
    page.wait_for_selector("#ss-answer .textfield span", timeout=60_000)
    page.wait_for_selector("#ss-tree .js-plotly-plot", timeout=60_000)
    page.wait_for_selector("text=speedup over plain decoding", timeout=60_000)
    colours = page.eval_on_selector_all(
        "#ss-answer .textfield span", "els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert len({c for c in colours if c not in ("rgba(0, 0, 0, 0)", "transparent")}) >= 1
    last = tree_title(page)
    m = re.search(r"Step (\d+)", last)
    assert m, last
    n = int(m.group(1))
    shot(page, "browser-run.png")

    # the slider revisits an earlier step's tree
    slider = page.locator("#ss-step input[type=range]")
    slider.fill("1")
    page.wait_for_function("() => (document.querySelector('#ss-tree .gtitle')||{}).textContent?.startsWith('Step 1:')",
                           timeout=15_000)
    assert tree_title(page).startswith("Step 1:")
    if n > 1:
        page.get_by_role("button", name="▶", exact=True).click()
        page.wait_for_function("() => document.querySelector('#ss-tree .gtitle').textContent.startsWith('Step 2:')",
                               timeout=15_000)

    # the trace downloads and is a SpecScope trace
    with page.expect_download(timeout=15_000) as dl:
        page.locator("#ss-download").click()
    data = json.loads(open(dl.value.path()).read())
    assert data["schema"] == "specscope.trace/2" and data["output"]
    assert "ar_baseline" in data["meta"]
    assert not page.errors, page.errors
    assert time.time() - t0 < 60


def set_max_new(page, n: int) -> None:
    rng = page.locator("#ss-maxnew input[type=range]")
    for _ in range(3):
        rng.fill(str(n))                 # sets the value and fires input/change
        page.wait_for_timeout(300)
        if page.locator("#ss-maxnew input[type=number]").input_value() == str(n):
            return
    raise AssertionError("could not set max new tokens")


def test_stop_button_cancels_a_long_run(page):
    page.get_by_role("tab", name="Run").click()
    page.locator("text=List every object in the image.").first.click()   # an example that decodes long
    page.wait_for_timeout(500)
    page.get_by_text("Sampling", exact=True).click()
    set_max_new(page, 512)
    page.get_by_role("button", name="▶ Run").click()
    page.wait_for_selector("text=tokens after", timeout=60_000)        # live decoding has started
    page.locator("#ss-stop").click()
    try:
        page.wait_for_selector("text=Stopped by you", timeout=30_000)
    except Exception:
        page.screenshot(path="/tmp/app-shots/stop-fail.png", full_page=True)
        raise
    text = page.locator("#ss-answer .textfield").first.text_content() or ""
    assert text.strip()                                                  # the partial answer stays
    set_max_new(page, 64)


def test_compare_and_teach_tabs(page):
    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("button", name="▶ Compare").click()
    page.wait_for_selector("text=configuration(s) measured", timeout=60_000)
    assert page.locator("text=n-gram · chain γ=4").count() >= 1
    shot(page, "browser-compare.png")

    page.get_by_role("tab", name="Teach").click()
    page.get_by_role("button", name="Start").click()
    page.wait_for_selector("text=Walk through them", timeout=60_000)
    page.get_by_role("button", name="Next ▶").click()
    page.wait_for_selector(".ss-teach-progress:has-text('Step 1 of')", timeout=15_000)
    assert "Draft" in page.locator(".ss-explain").first.text_content()
    page.get_by_role("button", name="Next ▶").click()
    page.wait_for_selector(".ss-teach-progress:has-text('Step 2 of')", timeout=15_000)
    page.get_by_role("button", name="◀ Previous").click()
    page.wait_for_selector(".ss-teach-progress:has-text('Step 1 of')", timeout=15_000)
    shot(page, "browser-teach.png")

    page.get_by_role("tab", name="Trace viewer").click()
    page.get_by_role("button", name="…or open a synthetic example trace").click()
    page.wait_for_selector("text=Loaded a synthetic", timeout=15_000)
    assert not page.errors, page.errors
