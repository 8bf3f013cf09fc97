"""The one check for numbers a person passes (lambdas, learning rates, alpha, psi): real and finite."""

from __future__ import annotations

import math
import numbers

from models.errors import AtlasError


def check_finite(value, name: str, low: float | None = None) -> float:
    """float(value) when it is a finite real number (and >= low when given), else one AtlasError naming it.

    Text is refused (parse it first, as the CLIs and the web page do); numpy numbers are accepted.
    """
    ok = isinstance(value, numbers.Real) and math.isfinite(value) and (low is None or value >= low)
    if not ok:
        bound = "" if low is None else f" >= {low:g}"
        raise AtlasError(f"{name} must be a finite number{bound}, got {value!r}.")
    return float(value)
