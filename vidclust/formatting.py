"""Numbers as people read them, in logs, the terminal and the report."""
from __future__ import annotations

import math
from typing import Any, Optional


def number(v: Any) -> Optional[float]:
    """`v` as a finite float, else None (None, text, NaN, infinity)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt(v: Any, missing: str = "") -> str:
    """An int with thousands separators, a float to 4 significant digits, None as `missing`."""
    if v is None:
        return missing
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    f = number(v)
    if f is None:
        return str(v)
    return f"{f:.4g}"
