"""How numbers read in `phiray status`, the stage log lines, the report and the model card."""

from __future__ import annotations

from typing import Any


def format_value(value: Any, none: str = "–") -> str:
    """A float to 4 significant digits, None as ``none``, anything else as ``str``."""
    if value is None:
        return none
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_pairs(values: dict[str, Any]) -> str:
    """``{"in": 900, "loss": 1.23456}`` -> ``in=900 loss=1.235`` (a manifest's rows or headline on one line)."""
    return " ".join(f"{key}={format_value(value)}" for key, value in values.items())
