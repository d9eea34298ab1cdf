"""Every screen readable and true, in a real browser at 1440x900 and at 390x844 (a phone), with the
default model (issue 27): the Compare table and plots readable (no word split or cut in a table
cell, no two texts of a plot overlapping or running off it), a preset chosen with the keyboard
applies, the last Teach step is consistent (and Next is off there), no absolute path in the
raw result or the downloaded trace, no character on any tab that only an emoji font draws.

Headless Chromium (Debian package) through Playwright, as tests/test_browser.py: without them
these tests FAIL and say what is missing; SPECSCOPE_SKIP_BROWSER=1 skips them on purpose.
SPECSCOPE_SHOTS=<folder> keeps a screenshot of every tab at both sizes.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata

import pytest

from core.paths import ROOT
from tests.app_server import served_app
from tests.test_browser import open_page, open_tab, run_and_wait

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # SPECSCOPE_SKIP_BROWSER=1 skips them; slow: scheduled first (tests/conftest.py)

SIZES = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
SHOTS = os.environ.get("SPECSCOPE_SHOTS")

# every word of every visible cell: split over two lines, or running past its cell's edge
BROKEN_WORDS_JS = """(sel) => {
  const bad = [];
  for (const cell of document.querySelectorAll(sel)) {
    if (!cell.offsetParent || cell.closest('[aria-hidden="true"]')) continue;
    const cr = cell.getBoundingClientRect();
    if (cr.width === 0) continue;
    const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    let n;
    while ((n = walk.nextNode())) {
      const re = /\\S+/g; let m;
      while ((m = re.exec(n.data))) {
        const r = document.createRange(); r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
        const rects = [...r.getClientRects()].filter(x => x.width > 0.5);
        if (!rects.length) continue;
        if (new Set(rects.map(x => Math.round(x.bottom))).size > 1) bad.push(['split', m[0]]);
        else if (rects[rects.length - 1].right > cr.right + 1 || rects[0].left < cr.left - 1) bad.push(['cut', m[0]]);
      }
    }
  }
  return bad;
}"""

# every text drawn in the plots under a root (and plotly's toolbar where it shows): its box, and the plot's
PLOT_TEXTS_JS = """(root) => {
  const out = [];
  for (const plot of document.querySelectorAll(root + ' .js-plotly-plot')) {
    const p = plot.getBoundingClientRect();
    if (p.width === 0 || !plot.offsetParent) continue;
    const box = r => [r.left, r.right, r.top, r.bottom];
    for (const t of plot.querySelectorAll('svg text')) {
      const s = (t.textContent || '').trim();
      const r = t.getBoundingClientRect();
      if (!s || r.width === 0 || r.height === 0 || getComputedStyle(t).visibility === 'hidden') continue;
      out.push({text: s, box: box(r), plot: box(p)});
    }
    const bar = plot.querySelector('.modebar-container');
    const mb = plot.querySelector('.modebar');
    if (bar && mb && getComputedStyle(bar).display !== 'none' && getComputedStyle(mb).opacity !== '0') {
      const r = mb.getBoundingClientRect();
      if (r.width > 0) out.push({text: '[plot toolbar]', box: box(r), plot: box(p)});
    }
  }
  return out;
}"""


def overlap(a, b, tol=1.0) -> bool:
    return a[0] < b[1] - tol and b[0] < a[1] - tol and a[2] < b[3] - tol and b[2] < a[3] - tol


def plot_problems(pg, root: str) -> list:
    """Texts of one plot that overlap each other, or run outside their plot."""
    items = pg.evaluate(PLOT_TEXTS_JS, root)
    assert items, f"no plot drawn under {root}"
    bad = []
    for i, a in enumerate(items):
        pb = a["plot"]
        if a["box"][0] < pb[0] - 1 or a["box"][1] > pb[1] + 1 or a["box"][2] < pb[2] - 1 or a["box"][3] > pb[3] + 1:
            bad.append(("outside its plot", a["text"]))
        for b in items[i + 1 :]:
            if a["plot"] == b["plot"] and overlap(a["box"], b["box"]):
                bad.append(("overlap", a["text"], b["text"]))
    return bad


def shot(pg, name, full=False):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        pg.screenshot(path=os.path.join(SHOTS, name), full_page=full)


ABS_PATH = re.compile(r"""(?:^|[\s"'(=])(/(?:home|root|tmp|var|usr|opt|work|srv|mnt|private|Users)\b[^\s"',)]*)""")


def server_paths(text: str) -> list[str]:
    found = [m.group(1) for m in ABS_PATH.finditer(text)]
    for p in {str(ROOT), tempfile.gettempdir()}:
        if p in text:
            found.append(p)
    return found


@pytest.fixture(scope="module")
def url():
    # the default model (assets/target with its best trained drafter), as a new user gets it
    with served_app({"SPECSCOPE_DEFAULT_TARGET": None, "HF_HUB_OFFLINE": "1"}) as (u, _, _):
        yield u


@pytest.fixture(scope="module", params=list(SIZES))
def pg(request, browser, url):
    page = open_page(browser, url, SIZES[request.param])
    page.wait_for_selector("role=tab[name='Run']")
    page.size = request.param
    yield page
    page.context.close()


def test_run_shows_no_server_path_and_its_views_read(pg):
    size, vp = pg.size, SIZES[pg.size]
    open_tab(pg, "Run")
    s = run_and_wait(pg, timeout=240_000)
    assert "Done" in s, s
    pg.wait_for_selector("#ss-tree .js-plotly-plot", timeout=15_000)
    pg.evaluate("window.scrollTo(0, 0)")
    shot(pg, f"{size}-run.png")
    shot(pg, f"{size}-run-full.png", full=True)
    # the raw result shown on the page, and the trace downloaded, name no server folder or file
    pg.get_by_text("Raw result (JSON", exact=False).first.click()
    pg.wait_for_timeout(500)
    shown = pg.locator("#ss-more").inner_text()
    assert "trace_file" in shown and "specscope-trace-" in shown, shown[:400]
    assert not server_paths(shown), server_paths(shown)
    with pg.expect_download(timeout=15_000) as dl:
        pg.locator("#ss-download").click()
    saved = open(dl.value.path()).read()
    assert json.loads(saved)["output"]
    assert not server_paths(saved), server_paths(saved)
    # the answer's token chips never split over two lines (a coloured space left at a line's end)
    split = pg.eval_on_selector_all("#ss-answer .token", "els => els.filter(e => e.getClientRects().length > 1).map(e => e.textContent)")
    assert not split, split
    # the slider's label and its end agree
    label = pg.locator("#ss-step").inner_text()
    m = re.search(r"Step \(1 to (\d+)\)", label)
    if m:
        assert pg.locator("#ss-step input[type=range]").get_attribute("max") == m.group(1)
    # the tree and the charts: no text over another, none off its plot
    for root in ("#ss-tree", "#ss-more"):
        assert not plot_problems(pg, root), (root, plot_problems(pg, root))
    assert pg.evaluate("document.documentElement.scrollWidth") <= vp["width"] + 2  # no sideways page
    assert not pg.errors, pg.errors


def test_a_preset_chosen_with_the_keyboard_applies(pg):
    open_tab(pg, "Run")
    acc = pg.get_by_text("Model: target, presets, precision", exact=True)
    acc.scroll_into_view_if_needed()
    acc.click()
    box = pg.get_by_label("Preset pair")
    box.wait_for(state="visible")
    default_note = pg.locator(".ss-status", has_text="small LLaVA-shaped model").count()
    assert default_note == 1
    box.click()
    pg.keyboard.press("Control+a")
    pg.keyboard.type("Custom")
    pg.keyboard.press("ArrowDown")
    pg.keyboard.press("Enter")
    pg.wait_for_selector(".ss-status:has-text('Type a target')", timeout=10_000)  # the note follows the choice
    box.click()
    pg.keyboard.press("Control+a")
    pg.keyboard.type("SmolVLM 2.2B")
    pg.keyboard.press("ArrowDown")
    pg.keyboard.press("Enter")
    # a Hub preset: either its ids fill the fields, or (offline, as here) the page says why it stays
    pg.wait_for_function("() => [...document.querySelectorAll('.ss-status')].some(e => /SmolVLM/.test(e.textContent))", timeout=10_000)
    target = pg.get_by_label("Target model").input_value()
    note = " ".join(pg.locator(".ss-status").all_inner_texts())
    assert target == "HuggingFaceTB/SmolVLM-Instruct" or "Staying on the embedded default" in note, (target, note)
    if target == "default":
        assert "SpecScope default" in box.input_value()  # the field says what is in use
    # back to the default pair for the tests that follow
    box.click()
    pg.keyboard.press("Control+a")
    pg.keyboard.type("SpecScope default")
    pg.keyboard.press("ArrowDown")
    pg.keyboard.press("Enter")
    pg.wait_for_selector(".ss-status:has-text('small LLaVA-shaped model')", timeout=10_000)
    assert pg.get_by_label("Target model").input_value() == "default"


def test_every_drafter_name_fits_its_dropdown(pg):
    """Each drafter, chosen in the Run tab's dropdown at 1440x900, shows its whole label (the
    EAGLE-3 one ran past the field's edge). On a phone a long label ends in "…" after its name."""
    if pg.size != "desktop":
        pytest.skip("a phone's dropdown shortens long labels with … by design (the name comes first)")
    from ui.presets import default_drafter, drafter_choices

    open_tab(pg, "Run")
    field = pg.locator(".ss-drafter input").first
    cut = []
    for label, _ in drafter_choices():
        field.click()
        pg.get_by_role("option", name=label).first.click()
        pg.wait_for_timeout(150)
        value, scroll, width = field.evaluate("e => [e.value, e.scrollWidth, e.clientWidth]")
        assert value == label
        if scroll > width + 1:
            cut.append((label, scroll, width))
    field.click()  # back to the default drafter for the tests that follow
    pg.get_by_role("option", name={k: label for label, k in drafter_choices()}[default_drafter()]).first.click()
    assert not cut, cut


def test_compare_reads_on_every_screen(pg):
    size, vp = pg.size, SIZES[pg.size]
    open_tab(pg, "Compare")
    # short: the layout is tested (a phone's table and chart read the same with one timed run)
    for label, value in (("Max new tokens", "24"), ("Timed runs", "2" if size == "desktop" else "1")):
        box = pg.get_by_label(label).last
        box.fill(value)
        box.press("Tab")
    s = run_and_wait(pg, timeout=300_000, button="#ss-compare-btn", status="#ss-compare-status")
    assert "configuration(s) measured" in s, s
    pg.wait_for_timeout(500)
    if size == "phone":  # pressing Compare brought the status and the chart on screen (not below the examples)
        status, fig = pg.locator("#ss-compare-status").bounding_box(), pg.locator("#ss-compare-fig").bounding_box()
        assert 0 <= status["y"] < vp["height"] / 2 and fig["y"] < vp["height"] - 100, (status, fig)
    pg.locator("#ss-compare-fig").scroll_into_view_if_needed()
    shot(pg, f"{size}-compare.png")
    shot(pg, f"{size}-compare-full.png", full=True)
    heads = pg.eval_on_selector_all("#ss-compare-table th", "els => els.map(e => e.innerText.trim())")
    assert "configuration" in heads and "accepted per step" in " ".join(h.replace("\n", " ") for h in heads)
    # a column's numbers read with its decimals: "7.00" above "0.56", never "7" (the table draws
    # the rows it shows: on screen first)
    pg.locator("#ss-compare-table").scroll_into_view_if_needed()
    pg.wait_for_timeout(300)
    cells = pg.evaluate(
        """() => { const rows = new Map();  // the body's cells are grid cells (the <table> holds the header)
          for (const c of document.querySelectorAll('#ss-compare-table [role=gridcell]')) {
            if (!rows.has(c.parentElement)) rows.set(c.parentElement, []);
            rows.get(c.parentElement).push(c.innerText.trim());
          }
          return [...rows.values()] }"""
    )
    assert cells and all(len(r) >= 5 for r in cells), cells
    for r in cells:
        assert all(re.fullmatch(r"\d+\.\d\d", c) for c in r[1:3]) and all(re.fullmatch(r"\d+\.\d", c) for c in r[3:5]), r
    # every header and cell at least a word wide: no word split over lines or cut at the cell's edge
    bad = pg.evaluate(BROKEN_WORDS_JS, "#ss-compare-table th, #ss-compare-table [role=gridcell]")
    assert not bad, bad[:8]
    # the chart: every configuration named in full, no text over another or off the plot
    assert not plot_problems(pg, "#ss-compare-fig"), plot_problems(pg, "#ss-compare-fig")
    items = pg.evaluate(PLOT_TEXTS_JS, "#ss-compare-fig")
    texts = " ".join(t["text"] for t in items)
    assert "n-gram" in texts and "dynamic tree" in texts and "×" in texts
    # the dashed 1× line crosses no number (a slowdown's number starts right of it)
    line = pg.eval_on_selector(
        "#ss-compare-fig .shapelayer path", "e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom] }"
    )
    crossed = [
        t["text"]
        for t in items
        if t["box"][0] < line[0] - 1 and t["box"][1] > line[1] + 1 and t["box"][2] < line[3] and t["box"][3] > line[2]
    ]
    assert not crossed, crossed
    assert pg.evaluate("document.documentElement.scrollWidth") <= vp["width"] + 2
    assert not pg.errors, pg.errors


def test_the_speedup_maps_scale_reads_whatever_the_measured_costs(browser):
    """The map's range follows the machine's measured costs, so its colour bar's top tick can land
    anywhere: at 0.3 it sat under the bar's title on a phone (seen in the app on an AMX Xeon). One
    page per screen holds the map at each draft cost, one under another, each in its own box."""
    from core import speedup_model
    from ui.insight import speedup_map

    ratios = (0.0, 0.03, 0.1, 0.3)
    figs = [
        speedup_map(speedup_model.grid(None, r), {"gamma": 5, "alpha": 0.8, "speedup_model": 3.1}, title="map", subtitle="") for r in ratios
    ]
    cfg = {"displayModeBar": False}
    body = "".join(
        f'<div id="map{i}">{f.to_html(include_plotlyjs=(i == 0), full_html=False, config=cfg)}</div>' for i, f in enumerate(figs)
    )
    html = f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>"
    for vp in SIZES.values():
        page = browser.new_page(viewport=vp)
        try:
            page.set_content(html)
            page.wait_for_function(
                f"() => document.querySelectorAll('.js-plotly-plot svg text').length && document.querySelectorAll('.js-plotly-plot').length == {len(ratios)}"
            )
            for i, r in enumerate(ratios):
                assert not plot_problems(page, f"#map{i}"), (vp, r, plot_problems(page, f"#map{i}"))
        finally:
            page.close()


def test_the_last_teach_step_is_consistent(pg):
    size, vp = pg.size, SIZES[pg.size]
    open_tab(pg, "Teach")
    pg.locator("#ss-teach-start").click()
    pg.wait_for_selector("text=Walk through them", timeout=120_000)
    assert pg.locator("#ss-teach-prev button, button#ss-teach-prev").first.is_disabled()
    pg.locator("#ss-teach-next").click()
    pg.wait_for_selector(".ss-teach-progress:has-text('Step 1 of')", timeout=15_000)
    n = int(re.search(r"of (\d+)", pg.locator(".ss-teach-progress").first.inner_text()).group(1))

    def fits_one_screen():  # the step view, read by a class: one 900 px screen
        if size != "desktop":
            return
        # from its progress line down: where the page was scrolled to depends on where the clicked
        # buttons sat while the page still loaded (a busy machine left it 255 px lower), not on the view
        pg.evaluate("document.querySelector('.ss-teach-progress').scrollIntoView({block: 'start'})")
        for sel in (".ss-teach-progress", "#ss-teach-text", "#ss-teach-explain", "#ss-teach-tree"):
            b = pg.locator(sel).first.bounding_box()
            assert b["y"] >= 0 and b["y"] + b["height"] <= vp["height"] + 1, (sel, b)

    pg.wait_for_selector("#ss-teach-tree .js-plotly-plot", timeout=15_000)
    fits_one_screen()
    idx = pg.locator("#ss-teach-index input")
    idx.fill(str(n))
    idx.press("Enter")
    pg.wait_for_selector(f".ss-teach-progress:has-text('Step {n} of {n}')", timeout=15_000)
    pg.wait_for_function(
        f"() => (document.querySelector('#ss-teach-tree .gtitle')||{{}}).textContent?.includes('Step {n}')", timeout=15_000
    )
    pg.wait_for_timeout(300)
    shot(pg, f"{size}-teach-last.png")
    # Next leads nowhere on the last step; Previous does
    assert pg.locator("#ss-teach-next").is_disabled() and pg.locator("#ss-teach-prev").is_enabled()
    text = pg.locator("#ss-teach-explain").inner_text()
    assert not ("whole path" in text and "also agreed" in text), text
    if "Discarded" in text:
        assert "fit" in text and "whole path" not in text, text
    title = pg.locator("#ss-teach-tree .gtitle").first.text_content()
    m = re.search(r"accepted (\d+) of (\d+)", title)
    new = int(re.search(r"This step: (\d+) new token", text).group(1))
    if m:  # the tree and the text count the same tokens
        assert new in (int(m.group(1)), int(m.group(1)) + 1), (title, text)
    assert "The answer ends here" in text, text  # the last step says so
    assert not plot_problems(pg, "#ss-teach-tree"), plot_problems(pg, "#ss-teach-tree")
    fits_one_screen()
    # the speedup map: readable, its label inside the plot, its legend marks on a dark band
    pg.get_by_text("Where the speedup comes from", exact=True).click()
    pg.wait_for_selector("#ss-teach-map .js-plotly-plot", timeout=15_000)
    pg.locator("#ss-teach-map").scroll_into_view_if_needed()
    pg.wait_for_timeout(300)
    shot(pg, f"{size}-teach-map.png")
    assert not plot_problems(pg, "#ss-teach-map"), plot_problems(pg, "#ss-teach-map")
    band = pg.eval_on_selector("#ss-teach-map .legend .bg", "e => getComputedStyle(e).fill")
    assert band.replace(" ", "") == "rgb(30,41,59)", band
    assert pg.evaluate("document.documentElement.scrollWidth") <= vp["width"] + 2
    assert not pg.errors, pg.errors


@functools.cache
def drawable(ch: str) -> bool:
    """A font that is not an emoji font has the character (fontconfig)."""
    out = subprocess.run(["fc-list", f":charset={ord(ch):x}", "family"], capture_output=True, text=True).stdout
    return any(line.strip() and "emoji" not in line.lower() for line in out.splitlines())


def test_no_empty_boxes_where_there_is_no_emoji_font(pg):
    """Every character on every tab (page text and plot text) has a glyph in a non-emoji font:
    an emoji (a status line's hourglass, About's colour squares) is an empty box on a machine
    without an emoji font. About's table keeps its words whole."""
    if not shutil.which("fc-list"):
        pytest.skip("fontconfig's fc-list is not installed")
    size = pg.size
    chars: dict[str, str] = {}
    for tab in ("Run", "Compare", "Teach", "Trace viewer", "About"):
        open_tab(pg, tab)
        if tab == "Trace viewer":
            pg.locator("#tv-example").click()
            pg.wait_for_selector("text=Loaded the example trace", timeout=15_000)
        pg.wait_for_timeout(400)
        shot(pg, f"{size}-{tab.split()[0].lower()}-tab.png")
        text = pg.evaluate("document.body.innerText") + " ".join(t["text"] for t in pg.evaluate(PLOT_TEXTS_JS, "body"))
        for ch in text:
            if ord(ch) > 127 and unicodedata.category(ch)[0] not in "ZC":
                chars.setdefault(ch, tab)
    missing = {f"U+{ord(c):04X} {c!r}": tab for c, tab in chars.items() if not drawable(c)}
    assert not missing, missing
    bad = pg.evaluate(BROKEN_WORDS_JS, "#ss-about th, #ss-about td")
    assert not bad, bad[:8]
    assert pg.locator("#ss-about .ss-sw").count() == 7  # the swatches, drawn
