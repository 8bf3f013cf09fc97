"""Files every layer writes and reads: crash-safe writes, safe checkpoint reads, content hashes of tensors.

A leaf of the networks layer (it imports only models/errors.py), so models/ and index/ can both use it.
torch is imported inside the functions that need it: reading an atlas writes files but never loads torch.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import tempfile
from pathlib import Path

from models.errors import CheckpointError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes its files 0600; a finished file gets the mode a plain open() would give it
_FILE_MODE = 0o666 & ~_current_umask()


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so that a rename inside it survives a power cut (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems (and Windows) cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", exclusive: bool = False):
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`, else remove it.

    A process killed at any point leaves either the old file, the complete new file, or a stray `.tmp-*`
    file that readers ignore; never a half-written `path`. exclusive=True: the first complete writer wins
    (hard link, which fails if `path` exists), so a file that workers may compute concurrently never changes
    once it exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        if exclusive:
            _link_or_keep(tmp, path)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _link_or_keep(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another worker finished the same file first; its content is the one everybody reads
    except OSError:  # no hard links on this filesystem: fall back to "last complete writer wins"
        os.replace(tmp, path)


def require_file(path: Path, what: str, inner: str) -> None:
    """One-line CheckpointError for a weights file that is missing, a directory, or empty."""
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist; check the path.")
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a directory; pass the {inner} inside it.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes); the download or copy did not finish.")


def read_checkpoint(path: Path) -> object:
    """torch.load with weights_only=True and one-line errors for missing, corrupt or unsafe files."""
    import torch

    require_file(path, "checkpoint", ".pt file")
    try:
        # argparse.Namespace appears in rosinality training checkpoints ("args"); it holds plain values.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(str(exc))
        if "global" in detail.lower():
            raise CheckpointError(
                f"checkpoint {path} contains pickled code or objects that are not loaded for "
                f"safety ({detail[:160]}); re-save it with tensors only."
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch file (truncated or corrupt?): {detail[:160]}"
        ) from None
    except Exception as exc:  # a text file or garbage trips the unpickler in many ways (IndexError, KeyError ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch file (truncated or corrupt?): {first[:160]}"
        ) from None


def _unpickler_detail(message: str) -> str:
    """The informative part of torch's weights_only refusal, without its boilerplate paragraph."""
    boiler = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.strip().startswith(boiler)]
    text = " ".join(lines).replace("WeightsUnpickler error:", "").strip()
    return text or "unreadable pickle"


def hash_tensors(h, tensors: dict, header: str = "{key}|{dtype}|{shape}|", bf16_as_float: bool = False) -> None:
    """Feed a hashlib object every tensor of `tensors` in key order: a header naming it, then its bytes.

    Two header formats are stored in atlases already (StyleGAN2's "{key}:{dtype}:{shape}" with bfloat16
    hashed as float32, and "{key}|{dtype}|{shape}|" everywhere else); changing either, or the bytes, would
    stop those atlases from opening with their models. Entries that are not tensors are skipped.
    """
    import torch

    for key in sorted(tensors):
        t = tensors[key]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(header.format(key=key, dtype=t.dtype, shape=tuple(t.shape)).encode())
        if bf16_as_float and t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
