"""The look of the app: CSS, the Gradio theme, and the layout's one script (on a phone, a button
that starts a run brings its results to the top of the screen)."""

from __future__ import annotations

import gradio as gr

PHONE_PX = 700  # the phone layout's width: the media query below


def scroll_on_phone(selector: str) -> str:
    """Client-side JS for a button's click: on a phone, scroll ``selector`` to the top of the
    screen. There the results sit below the inputs, so a run's status and output would stream
    below the fold. The page then stays put: no scroll anchoring, which picked a node in the
    results and followed it down as a chart or a table above it grew (the status ran off the
    top; Gradio scopes the app's CSS, so it is set here). Register it before the button's run:
    the page runs a trigger's events in order, each to its end (a streamed run included)."""
    return (
        f"() => {{ if (window.innerWidth <= {PHONE_PX}) {{ document.documentElement.style.overflowAnchor = 'none'; "
        f"document.querySelector({selector!r})?.scrollIntoView({{block: 'start'}}) }} }}"
    )


CSS = """
.gradio-container {max-width: 1480px !important}
.ss-header {padding: 2px 4px 0 4px}
.ss-header .ss-title {font-size: 1.6rem; font-weight: 750; letter-spacing: -0.01em; color: #0f172a}
.ss-header .ss-logo {color: #2e9e5b}
.ss-header .ss-sub {font-size: 1rem; font-weight: 500; color: #64748b; margin-left: 10px}
.ss-header p {margin: 2px 0 0 0; font-size: 0.98rem; color: #334155; max-width: 1100px}
.ss-modelbar {font-size: 0.92rem}
.ss-pill {display: inline-block; padding: 3px 12px; border-radius: 999px; font-weight: 600;
          border: 1px solid transparent}
.ss-pill.ok {background: #ecfdf5; color: #166534; border-color: #bbf7d0}
.ss-pill.busy {background: #eff6ff; color: #1e40af; border-color: #bfdbfe}
.ss-pill.err {background: #fef2f2; color: #991b1b; border-color: #fecaca}
.ss-status {padding: 10px 14px; border-radius: 10px; border: 1px solid #e2e8f0; background: #f8fafc;
            font-size: 0.98rem; color: #1f2937; min-height: 22px}
.ss-status.ok {background: #f0fdf4; border-color: #bbf7d0}
.ss-status.busy {background: #eff6ff; border-color: #bfdbfe}
.ss-status.err {background: #fef2f2; border-color: #fecaca; color: #991b1b}
.ss-status.warn {background: #fffbeb; border-color: #fde68a; color: #92400e}
/* the busy mark: a CSS spinner (an hourglass emoji is an empty box where no emoji font is installed) */
.ss-status.busy::before {content: ""; display: inline-block; box-sizing: border-box; width: 0.9em; height: 0.9em;
                         margin-right: 0.45em; vertical-align: -0.1em; border-radius: 50%;
                         border: 2px solid #bfdbfe; border-top-color: #1e40af; animation: ss-spin 0.9s linear infinite}
@keyframes ss-spin {to {transform: rotate(360deg)}}
/* About's colour swatches (drawn, not emoji) */
.ss-sw {display: inline-block; width: 0.95em; height: 0.95em; border-radius: 3px; vertical-align: -0.12em;
        border: 1px solid rgba(15, 23, 42, 0.18)}
.ss-sw-accepted {background: #2e9e5b} .ss-sw-bonus {background: #2f6fdb} .ss-sw-correction {background: #ef8a17}
.ss-sw-rejected {background: #d64545} .ss-sw-discarded {background: #eef1f5; border-color: #aeb6c2}
.ss-sw-unreached {background: #c5ccd6} .ss-sw-root {background: #334155}
#ss-about table td, #ss-about table th {word-break: normal !important; overflow-wrap: normal !important;
                                        hyphens: none}
.ss-legend {display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 0.88rem; color: #475569;
            align-items: center; padding: 2px 2px}
.ss-legend .sw {display: inline-block; width: 13px; height: 13px; border-radius: 3px;
                vertical-align: -2px; margin-right: 5px}
#ss-answer .textfield, #tv-answer .textfield {font-size: 1.08rem; line-height: 1.9}
.ss-vis-head {font-size: 0.95rem; color: #1f2937; margin: 2px 0 6px 0}
.ss-split {font-weight: 650; color: #0f172a; margin-top: 3px}
.ss-vis-answer {font-size: 1.08rem; line-height: 2.1; color: #111827; padding: 8px 10px; border-radius: 10px;
                border: 1px solid #e2e8f0; background: #fff; max-height: 260px; overflow-y: auto}
.ss-vis-answer .ss-tok {border-radius: 4px; padding: 1px 2px; margin: 0 1px; white-space: pre; color: #111827}
.ss-vis-answer .ss-vis, .ss-vis-key {text-decoration: underline; text-decoration-color: #7c2d12;
                                     text-decoration-thickness: 2px; text-underline-offset: 3px; font-weight: 650}
.ss-eye {display: inline-block; position: relative; width: 9px; height: 6px; margin: 0 0 0 2px; vertical-align: 0.55em;
          border: 1.5px solid #7c2d12; border-radius: 50%; background: #fff}
.ss-eye::after {content: ""; position: absolute; left: 2.5px; top: 1px; width: 3px; height: 3px; border-radius: 50%;
                background: #7c2d12}
.ss-vis-note {font-size: 0.92rem; color: #475569}
.ss-note {color: #64748b; font-size: 0.9rem}
.ss-teach-progress {font-size: 1.5rem; font-weight: 700; color: #0f172a}
.ss-teach-text {font-size: 1.45rem; line-height: 1.6; padding: 8px 16px; max-height: 136px; overflow-y: auto; border-radius: 12px;
                background: #f8fafc; border: 1px solid #e2e8f0; white-space: pre-wrap;
                word-break: break-word; min-height: 70px; color: #0f172a;
                display: flex; flex-direction: column-reverse}   /* scrolled to its end: the new tokens */
.ss-teach-text .tk {border-radius: 6px; padding: 1px 3px; white-space: pre}
.ss-teach-text .tk.accepted {background: #7fd19b}
.ss-teach-text .tk.bonus {background: #8fb4f5}
.ss-teach-text .tk.correction {background: #f7b866}
.ss-teach-text .tk.prefill {background: #cbd5e1}
.ss-teach-text .tk.rejected {color: #b91c1c; text-decoration: line-through; text-decoration-thickness: 3px;
                              background: #fde4e4; white-space: nowrap; display: inline-block}
.ss-teach-text .old {color: #334155}
.ss-explain {font-size: 1.12rem; line-height: 1.45; color: #1f2937}
.ss-explain ol {margin: 0; padding-left: 1.4em}
.ss-explain li {margin: 3px 0}
.ss-explain .q {font-family: ui-monospace, Menlo, Consolas, monospace; background: #eef2f6;
                border-radius: 6px; padding: 0 6px; white-space: pre-wrap; word-break: break-word}
.ss-explain .tally {margin-top: 6px; font-weight: 650; color: #0f172a}
.ss-big-btn button, button.ss-big-btn {font-size: 1.2rem !important; min-height: 48px}
/* a long drafter name: ellipsis, never under the dropdown's arrow */
.ss-drafter input {text-overflow: ellipsis; padding-right: 30px !important}
.ss-drafter .wrap-inner {padding-right: 4px}
/* compare table: headers wrap between words only */
#ss-compare-table th, #ss-compare-table th * {word-break: normal !important; overflow-wrap: normal !important;
                                             hyphens: none}
.ss-actions {flex-wrap: nowrap !important}
.ss-actions button {min-width: 0 !important}
/* a phone: the Run button, then the answer, then the settings */
@media (max-width: 700px) {
  #ss-run-row, .ss-stack-row {flex-direction: column !important}
  #ss-left, .ss-stack-left {display: contents !important}
  #ss-left > * {order: 3}
  #ss-left > .ss-first, #ss-left > .form:has(.ss-first), #ss-left > .ss-actions {order: 1}
  .ss-stack-left > * {order: 1}
  .ss-stack-left > .ss-later {order: 3}
  #ss-right, .ss-stack-right {order: 2; width: 100% !important}
  #ss-stepnav {flex-wrap: nowrap !important}
  .ss-teach-nav {flex-wrap: nowrap !important; gap: 6px}
  .ss-teach-nav button {min-width: 0 !important; font-size: 1rem !important}
  .ss-teach-progress {font-size: 1.1rem}
  .ss-header p {display: none}
  .ss-header .ss-title {font-size: 1.3rem}
  .ss-header .ss-sub {display: block; margin: 0; font-size: 0.85rem}
  .ss-teach-text {font-size: 1.15rem}
  /* plotly's toolbar would sit on the plots' titles; on a touch screen pinch-zoom does its job */
  .js-plotly-plot .modebar-container {display: none !important}
  .ss-explain {font-size: 1.05rem}
}
footer {display: none !important}
#ss-plotly-preload {position: absolute !important; left: -10000px; top: 0; width: 40px !important;
                    height: 40px; overflow: hidden; opacity: 0; pointer-events: none}
"""

THEME = gr.themes.Soft(
    primary_hue="emerald",
    secondary_hue="blue",
    neutral_hue="slate",
    font=["Inter", "Segoe UI", "Helvetica Neue", "Arial", "sans-serif"],
    font_mono=["DejaVu Sans Mono", "Menlo", "Consolas", "monospace"],
).set(
    body_text_color="#1f2937",
    block_title_text_weight="600",
    button_large_text_weight="650",
    block_label_background_fill="transparent",
    block_label_text_color="*neutral_600",
    block_title_background_fill="transparent",
    block_title_text_color="*neutral_700",
    block_label_border_width="0px",
    block_title_padding="0px",
    block_label_padding="2px 0px",
)
