"""Draw a chart as PNG or SVG: points, centre line, limits, and each violation in red with its rule names.

Matplotlib's object API with the Agg and SVG canvases directly, never pyplot: no global backend
or figure registry, so rendering is safe from any thread and leaves nothing behind. In SVG the
violation markers are one group per panel, id `violations-<stat>`, and text stays text, so a
browser (or a test) can find both.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from analytics.spc.charts import Chart, rule_names

FORMATS = ("png", "svg")
MAX_LABELS = 30  # rule names written beside this many violations per panel; more only clutter
MARKERS_BELOW = 500  # points get markers when there are fewer; beyond, a line reads better
_TITLES = {"xbar": "X̄", "r": "R", "s": "S", "i": "Individuals", "mr": "Moving range", "p": "p", "np": "np",
           "c": "c", "u": "u", "ewma": "EWMA", "cusum+": "CUSUM C+", "cusum-": "CUSUM C-"}


def render(chart: Chart, title: str, fmt: str = "png") -> bytes:
    """The chart (and its dispersion or C- panel) as PNG or SVG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    panels = [chart] if chart.secondary is None else [chart, chart.secondary]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "shopfloor", "font.size": 8}):
        fig = Figure(figsize=(10, 3 + 2.5 * (len(panels) - 1)), dpi=100, layout="constrained")
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, panel in zip(axes, panels):
            _panel(ax, panel)
        axes[0].set_title(title)
        canvas = FigureCanvasAgg(fig) if fmt == "png" else FigureCanvasSVG(fig)
        out = io.BytesIO()
        canvas.print_figure(out, format=fmt)
    return out.getvalue()


def _panel(ax, c: Chart) -> None:  # type: ignore[no-untyped-def]
    t = c.ts.astype("datetime64[us]")
    ax.plot(t, c.x, color="#1f4e79", linewidth=0.8, marker="o" if c.x.shape[0] < MARKERS_BELOW else None,
            markersize=3, label=_TITLES.get(c.stat, c.stat))
    for value, style, name in ((c.cl, "-", "CL"), (c.ucl, "--", "UCL"), (c.lcl, "--", "LCL")):
        if value is None:
            continue
        y = np.broadcast_to(np.asarray(value, dtype=np.float64), c.x.shape)
        ax.plot(t, y, linestyle=style, color="#2e7d32" if name == "CL" else "#555555", linewidth=0.9,
                drawstyle="steps-mid" if isinstance(value, np.ndarray) else "default")
        if not isinstance(value, np.ndarray):
            ax.annotate(f"{name} {value:.4g}", (1.0, value), xycoords=("axes fraction", "data"), xytext=(3, 0),
                        textcoords="offset points", va="center", color="#555555")
    bad = np.flatnonzero(c.flags)
    if bad.shape[0]:
        ax.scatter(t[bad], c.x[bad], s=28, color="#d62728", zorder=3, gid=f"violations-{c.stat}")
        for i in bad[:MAX_LABELS]:
            ax.annotate(",".join(rule_names(int(c.flags[i]))), (t[i], c.x[i]), xytext=(0, 6),
                        textcoords="offset points", ha="center", color="#d62728", fontsize=7)
    ax.set_ylabel(_TITLES.get(c.stat, c.stat))
    ax.grid(True, linewidth=0.3, alpha=0.5)
