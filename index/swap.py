"""Replace a whole folder by another in one step, so readers see the old atlas or the new one, never a mix.

Linux has an atomic exchange of two paths (renameat2 with RENAME_EXCHANGE); elsewhere, and on filesystems
without it (some network mounts), two renames run back to back and `finish_swap` completes a pair that a
crash cut in half.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from pathlib import Path

from models.files import fsync_dir  # the same fsync of a folder after a rename

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl without it
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a, b) -> bool:
    """Atomically swap the paths `a` and `b` (both must exist); False when the OS or filesystem cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise OSError(err, os.strerror(err), str(a))
    for parent in {Path(a).parent, Path(b).parent}:
        fsync_dir(parent)
    return True


def swap_folder(target, replacement, retired) -> None:
    """Put the folder `replacement` at `target`; the old `target` ends at `retired` (which must not exist).

    Atomic where `exchange` works; otherwise two renames, and a crash between them leaves `target` missing
    until `finish_swap(target, replacement, retired)` runs (the next add-vocabulary does it).
    """
    target, replacement, retired = Path(target), Path(replacement), Path(retired)
    if exchange(target, replacement):
        os.replace(replacement, retired)  # `replacement` now holds the old folder
        fsync_dir(retired.parent)
        return
    os.replace(target, retired)
    os.replace(replacement, target)
    fsync_dir(target.parent)


def finish_swap(target, replacement, retired) -> bool:
    """Complete a two-rename swap cut between its renames (target missing, both others there); True if it did."""
    target, replacement, retired = Path(target), Path(replacement), Path(retired)
    if not target.exists() and retired.is_dir() and replacement.is_dir():
        os.replace(replacement, target)
        fsync_dir(target.parent)
        return True
    return False
