"""A planted channel is found: protocol objects (not nn.Modules, not StyleGAN2) through build_atlas and the atlas.

The generator's (helpers.PlantedGenerator) image redness is driven by one style channel and greenness by
another; every other channel changes texture (not mean colour) or brightness a little. The embedder sees only
the mean colour, and its text side maps colour words to the matching directions. The atlas must rank the
planted channels first.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import GREEN, RED, MeanColourEmbedder, PlantedGenerator, build_planted

import index
from pipeline import build_atlas


@pytest.fixture(scope="module")
def planted_atlas(tmp_path_factory):
    return build_planted(tmp_path_factory.mktemp("planted") / "atlas", batch_size=7, chunk_channels=3)


def _ranking(data, phrase):
    v = data.vocab.index(phrase)
    delta_t = F.normalize(torch.tensor(data.vocab_embeddings[v] - data.neutral_embedding), dim=0).numpy()
    scores = data.relevance @ delta_t  # [C]
    return [tuple(data.channels[r]) for r in np.argsort(-scores)]


def test_planted_channels_rank_first(planted_atlas):
    data = index.read_atlas(planted_atlas)
    assert data.relevance.shape == (6 + 5, 8)  # conv layers only; toRGB layer 2 excluded by default
    assert _ranking(data, "red")[0] == RED
    assert _ranking(data, "green")[0] == GREEN
    # the planted channels are consistent across images; pure texture channels change nothing CLIP sees
    rows = {tuple(c): r for r, c in enumerate(data.channels)}
    assert data.consistency[rows[RED]] > 0.99 and data.consistency[rows[GREEN]] > 0.99
    assert np.allclose(data.relevance[rows[(0, 0)]], 0) and data.consistency[rows[(0, 0)]] == 0


def test_planted_labels_name_the_colour(planted_atlas):
    data = index.read_atlas(planted_atlas)
    rows = {tuple(c): r for r, c in enumerate(data.channels)}
    assert data.labels_index.shape == (11, 4)  # vocabulary smaller than k: every phrase ranked
    assert data.vocab[data.labels_index[rows[RED], 0]] == "red"
    assert data.vocab[data.labels_index[rows[GREEN], 0]] == "green"
    assert data.generator_fingerprint.startswith("probe:")  # no weights to hash: the protocol probe


def test_planted_query_atlas(planted_atlas):
    query = pytest.importorskip("query")
    if not hasattr(query, "Atlas"):
        pytest.skip("query.Atlas is not written yet")
    atlas = query.Atlas.open(planted_atlas)
    assert tuple(atlas.direction("red", neutral="shape", beta=0.1).top(1)[0][:2]) == RED
    assert tuple(atlas.direction("green", neutral="shape", beta=0.1).top(1)[0][:2]) == GREEN


class BareGenerator:
    """Only the essentials: no mean_w (computed from mapping), no rgb_layers, styles as numpy arrays."""

    z_dim = w_dim = 8
    style_dims = [6, 5, 4]

    def __init__(self):
        self.inner = PlantedGenerator()

    def mapping(self, z):
        return self.inner.mapping(z)

    def styles(self, ws):
        return [s.numpy() for s in self.inner.styles(torch.as_tensor(ws))]

    def synthesize(self, styles, noise_mode="const"):
        return self.inner.synthesize([torch.as_tensor(s) for s in styles])


def test_bare_protocol_generator(tmp_path):
    build_atlas(
        BareGenerator(),
        MeanColourEmbedder(),
        tmp_path / "bare",
        num_images=4,
        num_samples=300,
        vocabulary=["red", "green"],
        templates=["a {}."],
        neutral="shape",
        progress=False,
    )
    data = index.read_atlas(tmp_path / "bare")
    assert len(data.channels) == 6 + 5 + 4 and all(l["resolution"] == -1 for l in data.layers)
    assert _ranking(data, "red")[0] == RED and _ranking(data, "green")[0] == GREEN
