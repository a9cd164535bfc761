"""Matplotlib figures drawn off-screen and saved as PNG bytes (no display, no pyplot state)."""
from __future__ import annotations

import io
from typing import Optional


def figure(w: float, h: float, layout: Optional[str] = "constrained", axes: bool = True):
    """A `w` x `h` inch figure on the Agg canvas, with one axes (`(fig, ax)`) or none (`fig`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    if not axes:
        return fig
    return fig, fig.add_subplot()


def png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()
