"""Edits through a built atlas move images the planted way: conftest's `planted`, build_atlas on the planted
generator (one style channel drives redness, another greenness) and its mean-colour embedder, then Atlas.open."""

import numpy as np
import pytest
import torch
from helpers import GREEN, RED


def test_delta_s_is_the_formula_on_the_atlas_arrays(planted):
    data = planted.data
    t = data.vocab_embeddings[data.vocab.index("red")].astype(np.float64)
    dt = (t - data.neutral_embedding) / np.linalg.norm(t - data.neutral_embedding)
    r = data.relevance.astype(np.float64) @ dt
    r[np.abs(r) < 0.1] = 0
    np.testing.assert_allclose(
        planted.direction("red", beta=0.1).delta_s, r / np.abs(r).max() * data.style_std, rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("prompt,channel,other", [("red", 0, 1), ("green", 1, 0)])
def test_edits_move_the_planted_colour(planted, prompt, channel, other):
    ws = planted.sample_ws(range(24), psi=0.7)  # [24, 8]
    before = planted.render(ws).mean((2, 3))  # [24, 3] mean colour
    d = planted.direction(prompt, beta=0.1)
    assert d.top(1)[0][:2] == (RED if prompt == "red" else GREEN)
    up = planted.edit(ws, d, alpha=3.0).mean((2, 3))
    down = planted.edit(ws, d, alpha=-3.0).mean((2, 3))
    assert (up[:, channel] > before[:, channel]).all() and (down[:, channel] < before[:, channel]).all()
    # the other colour moves far less than the planted one
    assert (up[:, other] - before[:, other]).abs().mean() < 0.25 * (up[:, channel] - before[:, channel]).mean()


def test_new_prompt_through_the_embedder(planted):
    d = planted.direction("a red red thing", beta=0.1)  # not in the vocabulary: embedded with the templates
    assert d.top(1)[0][:2] == RED
    ws = planted.sample_ws([5, 6], psi=0.7)
    assert torch.all(planted.edit(ws, d, 2.0)[:, 0].mean((1, 2)) > planted.render(ws)[:, 0].mean((1, 2)))
