"""Pure rendering: a decoding ``Trace`` (or its dict / JSON) -> display objects.

No model, no Gradio import: every function here takes a trace (or a comparison) and returns a
plotly figure, a list for ``gr.HighlightedText``, or an HTML / Markdown string. Each runs in a few
milliseconds for a 200-step trace. One idea per module:

  base           palette, fonts, a trace's pieces, plotly building blocks
  tree_layout    which step opens, node status, where the chips go
  tree           the draft tree of one step (``tree_figure``)
  tokens         the coloured answer, the Teach legend, the answer marked by image dependence
  tables         every step as a table row (``rejected_html``)
  charts         accepted per step, acceptance by depth, where the time went
  summary        the headline numbers with the comparison to plain decoding
  verdict        the words and colours of a comparison's verdict (speedup, identity, bound)
  compare_chart  the Compare tab's chart

Vocabulary of the display (same colours everywhere):
  accepted  green  - draft token the target agreed with (committed)
  discarded pale, struck - agreed with, but after EOS / the length limit: not in the output
  rejected  red    - draft token tried and refused
  unreached grey   - draft token below a rejected node, never checked
  bonus     blue   - token the target added after a fully accepted path
  correction orange - token the target added in place of rejected drafts
  prefill   slate  - first token, produced by the prompt's forward
"""

from .base import (
    AMBER,
    BLUE,
    COLOR_MAP,
    DISCARDED,
    GREEN,
    GREY,
    ORANGE,
    RED,
    SLATE,
    STATUS_COLOR,
    TREE_HEIGHT,
    as_trace,
    empty_figure,
    esc,
    piece,
    placeholder,
    visible,
    wrap,
)
from .charts import SMALL, accept_length_figure, depth_figure, time_figure
from .compare_chart import compare_figure
from .summary import summary_markdown
from .tables import rejected_html, shown_cells, table_value
from .tokens import highlighted_tokens, legend_html, split_lead, visual_answer_html, visual_panel_html, visual_tip
from .tree import KEY as TREE_KEY
from .tree import tree_figure
from .tree_layout import COMPACT_WIDTH, DESKTOP_WIDTH, GAP_PX, chip_size, most_informative_step, node_status, spread, tree_layout
from .verdict import bound_note, differs_note, identity_kind, same_cell, speed_cell, speed_message, speedup_text, status_line

__all__ = [
    "AMBER",
    "BLUE",
    "COLOR_MAP",
    "DISCARDED",
    "GREEN",
    "GREY",
    "ORANGE",
    "RED",
    "SLATE",
    "STATUS_COLOR",
    "TREE_HEIGHT",
    "TREE_KEY",
    "COMPACT_WIDTH",
    "DESKTOP_WIDTH",
    "GAP_PX",
    "as_trace",
    "empty_figure",
    "esc",
    "piece",
    "placeholder",
    "visible",
    "wrap",
    "accept_length_figure",
    "depth_figure",
    "time_figure",
    "SMALL",
    "compare_figure",
    "summary_markdown",
    "rejected_html",
    "shown_cells",
    "table_value",
    "highlighted_tokens",
    "legend_html",
    "split_lead",
    "visual_answer_html",
    "visual_panel_html",
    "visual_tip",
    "tree_figure",
    "chip_size",
    "most_informative_step",
    "node_status",
    "spread",
    "tree_layout",
    "bound_note",
    "differs_note",
    "identity_kind",
    "same_cell",
    "speed_cell",
    "speed_message",
    "speedup_text",
    "status_line",
]
