"""Bokeh figures stacked on one shared time axis, so that zoom and pan move them together,
each made alike and each with its y axis kept fitted to what is visible.

Bokeh is imported only inside the methods that draw, so importing this module does not load it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LinkedPanels"]

_TOOLS = "xpan,xwheel_zoom,xbox_zoom,reset,save"

# keeps a panel's y axis fitted to what is visible whenever the shared x range moves
_FIT_Y_JS = """
const start = xr.start, end = xr.end;
let lo = Infinity, hi = -Infinity;
for (let s = 0; s < sources.length; s++) {
  const data = sources[s].data, xs = data[xcols[s]];
  for (const col of cols[s]) {
    const ys = data[col];
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i], y = ys[i];
      if (x >= start && x <= end && Number.isFinite(y)) {
        if (y < lo) lo = y;
        if (y > hi) hi = y;
      }
    }
  }
}
if (include_zero) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
if (lo <= hi) {
  const pad = (hi - lo) * margin || Math.abs(hi) * 0.01 || 1;
  yr.start = lo - (include_zero && lo === 0 ? 0 : pad);
  yr.end = hi + pad;
}
"""


def _number_format(values: Sequence[float]) -> str:
    """Numeral.js format for an axis: abbreviated (1.5m, 3.2b) for large numbers."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    return "0.[00]a" if finite and max(finite) >= 10_000_000 else "0,0.[00]"


class LinkedPanels:
    """Panels sharing the time axis ``start``..``end`` (epoch ms), each added by `panel`."""

    def __init__(self, start: float, end: float, bokeh_time: str) -> None:
        from bokeh.models import DatetimeTickFormatter, Range1d

        self.time_fmt = "{" + bokeh_time + "}"  # Bokeh's tooltip format for a time
        self.figures: list[Any] = []
        self.x_range = Range1d(start, end, bounds=(start, end))
        self.ticks = DatetimeTickFormatter(
            seconds="%H:%M:%S",
            minsec="%H:%M:%S",
            minutes="%H:%M",
            hourmin="%m-%d %H:%M",
            hours="%m-%d %H:%M",
            days="%Y-%m-%d",
            months="%Y-%m",
            years="%Y",
        )

    def panel(self, height: int, label: str, *, y_range: Any = None) -> Any:
        """A new figure below the others, its time axis hidden (`layout` shows the last's)."""
        from bokeh.models import Range1d
        from bokeh.plotting import figure

        fig = figure(
            x_axis_type="datetime",
            x_range=self.x_range,
            y_range=y_range or Range1d(0, 1),
            height=height,
            sizing_mode="stretch_width",
            tools=_TOOLS,
            active_drag="xpan",
            active_scroll="xwheel_zoom",
            min_border_left=78,
            min_border_right=16,
            min_border_top=6,
            min_border_bottom=6,
            background_fill_color="#fcfcfc",
        )
        fig.yaxis.axis_label = label
        fig.yaxis.axis_label_text_font_size = "11px"
        fig.yaxis.axis_label_text_font_style = "normal"
        fig.xaxis.formatter = self.ticks
        fig.xaxis.visible = False
        fig.grid.grid_line_color = "#ececec"
        fig.outline_line_color = "#dddddd"
        fig.toolbar.logo = None
        if height < 200:
            fig.yaxis.ticker.desired_num_ticks = 4
        self.figures.append(fig)
        return fig

    def fit_y(
        self,
        fig: Any,
        specs: list[tuple[Any, str, list[str]]],
        *,
        include_zero: bool = False,
        margin: float = 0.06,
    ) -> None:
        """Fit ``fig``'s y axis to the visible data (``specs``: source, x column, y columns)
        now, and again in the browser whenever the shared time axis moves."""
        from bokeh.models import CustomJS, NumeralTickFormatter

        lo, hi = math.inf, -math.inf
        for source, _, cols in specs:
            for col in cols:
                values = np.asarray(source.data[col], dtype=float)
                values = values[np.isfinite(values)]
                if len(values):
                    lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        if include_zero:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        if lo <= hi:
            pad = (hi - lo) * margin or abs(hi) * 0.01 or 1.0
            fig.y_range.start = lo - (0 if include_zero and lo == 0 else pad)
            fig.y_range.end = hi + pad
            fig.yaxis.formatter = NumeralTickFormatter(format=_number_format([lo, hi]))
        callback = CustomJS(
            args={
                "xr": self.x_range,
                "yr": fig.y_range,
                "sources": [s for s, _, _ in specs],
                "xcols": [x for _, x, _ in specs],
                "cols": [c for _, _, c in specs],
                "include_zero": include_zero,
                "margin": margin,
            },
            code=_FIT_Y_JS,
        )
        self.x_range.js_on_change("start", callback)
        self.x_range.js_on_change("end", callback)

    @staticmethod
    def legend(fig: Any, location: str = "top_left") -> None:
        """``fig``'s legend (if it has one) in one row; clicking an entry hides its glyphs."""
        if not fig.legend:
            return
        fig.legend.location = location
        fig.legend.orientation = "horizontal"
        fig.legend.click_policy = "hide"
        fig.legend.label_text_font_size = "11px"
        fig.legend.background_fill_alpha = 0.8
        fig.legend.border_line_alpha = 0.3
        fig.legend.spacing = 14
        fig.legend.padding = 4
        fig.legend.margin = 6
        fig.legend.glyph_height = 14

    def hover(
        self, fig: Any, renderers: list[Any], tooltips: list[tuple[str, str]], **kw: Any
    ) -> None:
        """Tooltips for ``renderers`` only, so other glyphs (markers, spans) stay quiet."""
        from bokeh.models import HoverTool

        if renderers:
            fig.add_tools(HoverTool(renderers=renderers, tooltips=tooltips, **kw))

    def layout(self) -> Any:
        """The panels as one column with one toolbar (None: there is none)."""
        from bokeh.layouts import gridplot

        if not self.figures:
            return None
        self.figures[-1].xaxis.visible = True
        grid = gridplot(
            [[fig] for fig in self.figures],
            toolbar_location="right",
            merge_tools=True,
            sizing_mode="stretch_width",
        )
        grid.toolbar.logo = None
        return grid
