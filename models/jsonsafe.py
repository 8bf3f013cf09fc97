"""Strict JSON values: what the CLIs print with --json and what the atlas writes as .json (a leaf: numpy only)."""

from __future__ import annotations

import numpy as np


def json_safe(obj, default=None):
    """`obj` with every NaN / inf float as None (strict JSON: parsers reject NaN and Infinity), numpy made plain."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {k: json_safe(v, default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, default) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item(), default)
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist(), default)
    if default is not None:
        return json_safe(default(obj))
    return str(obj)
