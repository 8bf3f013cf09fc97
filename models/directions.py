"""SPEC §4 text direction Δt = normalise(t(target) - t(neutral)): the one place it is computed (numpy, no torch)."""

from __future__ import annotations

import numpy as np

from models.errors import NoDirectionError

MIN_NORM = 1e-6  # |t(target) - t(neutral)| below this: the two embeddings are the same, Δt is undefined

NO_DIRECTION = (
    "the target and the neutral have the same embedding, so there is no direction; "
    "use a neutral that names the class being edited (e.g. 'face') and a different target."
)


def delta_t_rows(t_target, t_neutral) -> tuple[np.ndarray, np.ndarray]:
    """(Δt [N, D] float32, defined [N] bool) for targets [N, D]; rows equal to the neutral are zero, not defined."""
    diff = np.asarray(t_target, np.float32) - np.asarray(t_neutral, np.float32)  # [N, D]
    norm = np.sqrt(np.add.reduce(diff * diff, axis=-1))  # [N] (np.linalg.norm's sum, without its wrapper)
    defined = norm > MIN_NORM
    return np.where(defined[:, None], diff / np.where(defined, norm, 1)[:, None], 0).astype(np.float32), defined


def delta_t(t_target, t_neutral) -> np.ndarray:
    """Δt for a target [D] or targets [N, D]; NoDirectionError when any target has the neutral's embedding."""
    target = np.asarray(t_target, np.float32)
    rows, defined = delta_t_rows(target.reshape(-1, target.shape[-1]), t_neutral)
    if not defined.all():
        raise NoDirectionError(NO_DIRECTION)
    return rows.reshape(target.shape)
