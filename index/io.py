"""Crash-safe file writes of arrays and JSON, through models/files.py `atomic_path` (a temporary name in the
same folder, then os.replace)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from models.files import atomic_path
from models.jsonsafe import json_safe


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
