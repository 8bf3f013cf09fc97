"""One device rule for every command: "auto" is the first CUDA GPU when one is visible, else the CPU."""

from __future__ import annotations

import re

from models.errors import AtlasError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(device: str | None) -> str:
    """The device name, lower-cased, if it is one we know (no torch import); AtlasError otherwise."""
    text = "auto" if device is None else str(device).strip().lower()
    if not _DEVICE.match(text):
        raise AtlasError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}.")
    return text


def resolve_device(device: str | None = "auto") -> str:
    """ "auto"/None -> "cuda" or "cpu"; "cpu", "cuda", "cuda:N", "mps" checked against what this machine has."""
    text = check_device(device)
    if text == "cpu":
        return text
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.split(":")[1]) if ":" in text else 0
        if count == 0:
            raise AtlasError(f"--device {text}: no CUDA GPU is visible to PyTorch here; use --device cpu (or auto).")
        if index >= count:
            raise AtlasError(f"--device {text}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1}).")
    if text == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise AtlasError("--device mps: Apple's MPS backend is not available here; use --device cpu (or auto).")
    return text


def check_seed(seed, what: str = "seed") -> int:
    """A seed torch.Generator.manual_seed accepts: a whole number in [0, 2**63)."""
    try:
        value = int(seed)
    except (TypeError, ValueError, OverflowError):
        raise AtlasError(f"{what} must be a whole number, got {seed!r}.") from None
    if not 0 <= value < 2**63:
        raise AtlasError(f"{what} must be between 0 and 2**63 - 1, got {value}.")
    return value
