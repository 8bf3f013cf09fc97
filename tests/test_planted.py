"""A planted channel is found: protocol objects (not nn.Modules, not StyleGAN2) through build_atlas and the atlas.

The generator's image redness is driven by one style channel and greenness by another; every other channel
changes texture (not mean colour) or brightness a little. The embedder sees only the mean colour, and its
text side maps colour words to the matching directions. The atlas must rank the planted channels first.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import index  # noqa: E402
from pipeline import build_atlas  # noqa: E402

RED, GREEN, BRIGHT = (0, 3), (1, 1), (1, 0)  # (layer, channel)
COLOUR_WORDS = {"red": 0, "green": 1, "blue": 2}


class PlantedGenerator:
    """A plain object implementing the generator protocol; styles are plain tensors."""

    z_dim = w_dim = 8
    num_ws = 1
    resolution = 8
    style_dims = [6, 5, 4]
    rgb_layers = [2]

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.affine = [torch.randn(8, d, generator=g) for d in self.style_dims]
        self.mean_w = torch.zeros(8)
        yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
        self.checker = ((yy + xx) % 2 * 2 - 1).float()  # [8, 8], zero mean

    def mapping(self, z):
        return torch.tanh(z)

    def styles(self, ws):
        ws = ws[:, 0] if ws.ndim == 3 else ws
        return [ws @ a for a in self.affine]

    def synthesize(self, styles, noise_mode="const"):
        s0, s1, s2 = styles
        texture = s0[:, [0, 1, 2, 4, 5]].sum(1) + s1[:, 2:].sum(1) + s2.sum(1)  # [B]
        img = 0.1 * torch.tanh(texture)[:, None, None, None] * self.checker  # [B, 3, 8, 8] after broadcast
        img = img.expand(-1, 3, -1, -1).clone()
        img[:, 0] += 0.5 * torch.tanh(s0[:, RED[1]])[:, None, None]
        img[:, 1] += 0.5 * torch.tanh(s1[:, GREEN[1]])[:, None, None]
        img += 0.1 * torch.tanh(s1[:, BRIGHT[1]])[:, None, None, None]
        return img


class MeanColourEmbedder:
    """Image embedding: a fixed rotation of [mean r, g, b, 1]; text: colour words to the same directions."""

    dim = 8

    def __init__(self):
        q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))
        self.rotation = q

    def encode_image(self, images):
        m = images.mean((2, 3))  # [B, 3]
        x = torch.cat([m, torch.ones(len(m), 1), torch.zeros(len(m), 4)], 1)  # [B, 8]
        return F.normalize(x @ self.rotation, dim=-1)

    def encode_text(self, texts):
        rows = []
        for text in texts:
            v = torch.zeros(8)
            v[3] = 1.0
            for word in text.lower().replace(".", " ").split():
                if word in COLOUR_WORDS:
                    v[COLOUR_WORDS[word]] += 1.0
            g = torch.Generator().manual_seed(sum(map(ord, text)))
            v[4:] = 0.05 * torch.randn(4, generator=g)  # template wording moves only the unused dimensions
            rows.append(v)
        return F.normalize(torch.stack(rows) @ self.rotation, dim=-1)


@pytest.fixture(scope="module")
def planted_atlas(tmp_path_factory):
    out = tmp_path_factory.mktemp("planted") / "atlas"
    build_atlas(
        PlantedGenerator(),
        MeanColourEmbedder(),
        out,
        num_images=6,
        num_samples=500,
        vocabulary=["red", "green", "blue", "texture"],
        templates=["a photo of a {}.", "a {} thing."],
        neutral="shape",
        batch_size=7,
        chunk_channels=3,
        progress=False,
    )
    return out


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
