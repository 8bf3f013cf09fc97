"""Crash-safe file writes: everything lands under a temporary name in the same folder, then os.replace."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from models.jsonsafe import json_safe


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes its files 0600; a finished file gets the mode a plain open() would give it
_FILE_MODE = 0o666 & ~_current_umask()


def _fsync_dir(folder: Path) -> None:
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
        _fsync_dir(path.parent)
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


def refuse_inside(folder, path, what: str = "output") -> Path:
    """`path`, unless it lies inside `folder` (an atlas): files derived from an atlas never go into it, where they
    could overwrite its own data (atlas.h5, MANIFEST.json ...) or be taken for part of it."""
    from models.errors import AtlasError

    path = Path(path).expanduser()
    if folder is None:
        return path
    inside = Path(folder).expanduser().resolve()
    target = path.resolve()
    if target == inside or inside in target.parents:
        raise AtlasError(
            f"the {what} {path} would be written inside the atlas folder {folder}; write it elsewhere "
            "(e.g. -o results/{0}).".format(path.name)
        )
    return path


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path, obj, exclusive: bool = False) -> None:
    with atomic_path(path, exclusive=exclusive) as tmp:
        text = json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False)
        tmp.write_bytes((text + "\n").encode("utf-8"))


def write_npz_atomic(path, exclusive: bool = True, **arrays) -> None:
    """np.savez (uncompressed, exact bytes) to `path` atomically; by default the first writer wins.

    Float arrays must be finite: a NaN chunk would spread into every direction of the atlas (SPEC §5 divides by
    the largest |score|), so it is refused here, before anything reads it.
    """
    from models.errors import AtlasError

    bad = [k for k, v in arrays.items() if np.asarray(v).dtype.kind in "fc" and not np.isfinite(v).all()]
    if bad:
        path = Path(path)
        raise AtlasError(
            f"{path.parent.name}/{path.name} would hold NaN or infinite values ({', '.join(bad)}); the "
            "models overflowed (e.g. in fp16: build with --precision fp32) or an input is not finite "
            "(check --alpha and the model files). Nothing was written."
        )
    with atomic_path(path, suffix=".npz", exclusive=exclusive) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def read_npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def remove_stray_temps(folder, names=None) -> None:
    """Delete the `.tmp-<name>.*` files a killed atomic_path writer of one of `names` left behind (all `.tmp-*`
    when names is None); never the files readers use, nor temp files of names we did not write."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(".tmp-*"):
            if names is not None and not any(p.name.startswith(f".tmp-{n}.") for n in names):
                continue
            with contextlib.suppress(OSError):
                p.unlink()
