"""The one-prompt path of global_directions (what Atlas.direction runs) gives, bit for bit, what the batch
machinery gives for the same scores: it only skips allocations and broadcasts."""

import numpy as np
import pytest

from query.direction import _one_direction, directions_from_scores, global_directions, single_scores


@pytest.mark.parametrize("seed,beta", [(0, 0.05), (1, 0.15), (2, 0.3), (3, 0.99)])
def test_one_prompt_path_equals_the_batch_path(seed, beta):
    rng = np.random.default_rng(seed)
    rel = rng.standard_normal((900, 24)).astype(np.float32)
    rel /= np.linalg.norm(rel, axis=1, keepdims=True)
    rel[5] = 0  # a dead channel
    std = rng.uniform(0, 2, 900)
    std[7] = 0  # a channel that never varies
    dt = rng.standard_normal(24).astype(np.float32)
    dt /= np.linalg.norm(dt)
    fast = _one_direction(rel, std, dt, beta, keep_scores=True)
    slow = directions_from_scores(single_scores(rel, dt)[None], std, beta)
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    assert all(np.array_equal(a, b) for a, b in zip(global_directions(rel, std, dt, beta), fast))
    if beta == 0.99:  # nothing passes: zero Δs and num_c 0, never NaN
        assert fast[2][0] == 0 and not fast[1].any() and np.isfinite(fast[1]).all()
