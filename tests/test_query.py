"""query.Atlas on synthetic AtlasData: the SPEC §5 formula (recomputed here independently), beta handling,
auto-beta, top-k, compositions, prompts outside the vocabulary, bulk export, and edits on a planted generator."""

import h5py
import numpy as np
import pytest
import torch
from helpers import PlantedColourGenerator, planted_data

from models.errors import AtlasError, PromptError
from query import Atlas
from query.export import compute_library, export_library, manifest_path
from query.synthetic import synthetic_atlas_data

VOCAB = ["red", "green", "blue", "circle", "square", "smile", "curly hair", "shape", "dark background"]


def spec_delta_s(data, prompt, neutral_embedding=None, beta=0.15):
    """SPEC §5 written out in float64 from the raw arrays, without query's code."""
    t = data.vocab_embeddings[data.vocab.index(prompt)].astype(np.float64)
    tn = (data.neutral_embedding if neutral_embedding is None else neutral_embedding).astype(np.float64)
    dt = (t - tn) / np.linalg.norm(t - tn)
    r = data.relevance.astype(np.float64) @ dt
    scores = r.copy()
    r[np.abs(r) < beta] = 0
    r = r / np.abs(r).max()
    return scores, r * data.style_std


@pytest.fixture()
def data():
    return synthetic_atlas_data(vocab=VOCAB, dim=32, seed=3)


@pytest.fixture()
def atlas(data):
    return Atlas(data)


@pytest.mark.parametrize("beta", [0.05, 0.15, 0.3])
def test_direction_is_the_spec_formula(data, atlas, beta):
    for prompt in ("red", "curly hair", "dark background"):
        scores, expected = spec_delta_s(data, prompt, beta=beta)
        d = atlas.direction(prompt, beta=beta)
        np.testing.assert_allclose(d.scores, scores, atol=1e-5)
        np.testing.assert_allclose(d.delta_s, expected, rtol=1e-5, atol=1e-7)
        assert d.num_c == int((np.abs(scores) >= beta).sum()) and d.beta == beta
        assert np.isclose(np.abs(d.delta_s / data.style_std).max(), 1.0)  # strongest channel -> +-1
        assert d.prompt == prompt and d.neutral == "shape"


def test_vocabulary_neutral_and_contract_views(data, atlas):
    neutral = data.vocab_embeddings[VOCAB.index("circle")]
    _, expected = spec_delta_s(data, "red", neutral_embedding=neutral)
    d = atlas.direction("red", neutral="circle")
    np.testing.assert_allclose(d.delta_s, expected, rtol=1e-5, atol=1e-7)
    assert d.neutral == "circle"
    # "Red " reaches the same stored embedding: CLIP's tokenizer lowercases and collapses whitespace
    np.testing.assert_allclose(atlas.direction("  Red ", neutral="circle").delta_s, d.delta_s)
    assert atlas.channels[:2] == [(0, 0), (0, 1)] and len(atlas.channels) == len(data.channels)
    assert atlas.relevance.shape == (60, 32) and atlas.style_std.shape == (60,) and atlas.style_mean.shape == (60,)


def test_top_is_sorted_by_absolute_score(atlas):
    d = atlas.direction("blue")
    top = d.top(8)
    assert [abs(s) for _, _, s in top] == sorted((abs(s) for _, _, s in top), reverse=True)
    assert max(abs(d.scores)) == pytest.approx(abs(top[0][2]))
    layer, channel, score = top[0]
    assert d.scores[atlas.row(layer, channel)] == pytest.approx(score)


def test_to_styles_puts_delta_s_per_layer_with_torgb_zero(data, atlas):
    d = atlas.direction("green", beta=0.05)
    styles = d.to_styles()
    assert [len(s) for s in styles] == [l["width"] for l in data.layers]
    for l in data.layers:
        if l["kind"] == "torgb":
            assert not styles[l["index"]].any()
    for r, (layer, channel) in enumerate(data.channels):
        assert styles[layer][channel] == d.delta_s[r]


def test_beta_above_every_score_names_the_largest_beta_that_works(atlas):
    scores = atlas.direction("square", beta=0.01).scores
    peak = float(np.abs(scores).max())
    with pytest.raises(AtlasError) as err:
        atlas.direction("square", beta=min(peak + 0.05, 0.99))
    message = str(err.value)
    suggested = float(message.split("use beta <= ")[1].split(",")[0])
    assert suggested <= peak < suggested + 0.001
    assert atlas.direction("square", beta=suggested).num_c >= 1


def test_no_nan_when_nothing_responds():
    data = synthetic_atlas_data(vocab=VOCAB)
    data.relevance[:] = 0  # a CLIP that sees no channel at all
    with pytest.raises(AtlasError, match="every score is 0"):
        Atlas(data).direction("red", beta=0.1)


@pytest.mark.parametrize("beta", [0, 1, -0.1, 1.5, float("nan"), float("inf"), "abc"])
def test_beta_outside_the_open_interval_is_refused(atlas, beta):
    with pytest.raises(AtlasError, match="beta"):
        atlas.direction("red", beta=beta)


def test_auto_beta_is_the_largest_grid_value_keeping_more_than_20_channels():
    data = synthetic_atlas_data(vocab=VOCAB, dim=8, seed=1)  # D = 8: scores spread widely over 60 channels
    atlas = Atlas(data)
    for prompt in VOCAB[:6]:
        scores = atlas.direction(prompt, beta=0.01).scores
        grid = [round(0.10 + 0.01 * i, 2) for i in range(20)]
        ok = [b for b in grid if (np.abs(scores) >= b).sum() > 20]
        d = atlas.direction(prompt, beta="auto")
        assert d.beta == (max(ok) if ok else 0.10)
        assert d.num_c == (np.abs(scores) >= d.beta).sum()
        assert (d.num_c > 20) == bool(ok)


def test_top_k_keeps_the_k_strongest(atlas):
    d = atlas.direction("circle", top_k=7)
    assert d.num_c == 7
    strongest = set(np.argsort(-np.abs(d.scores))[:7].tolist())
    assert set(np.flatnonzero(d.delta_s).tolist()) == strongest
    assert np.isclose(np.abs(d.delta_s / atlas.style_std).max(), 1.0)
    with pytest.raises(AtlasError, match="top_k"):
        atlas.direction("circle", top_k=0)


def test_composition_sums_weighted_directions_and_reports_overlaps(atlas):
    red, hair = atlas.direction("red", beta=0.1), atlas.direction("curly hair", beta=0.1)
    d = atlas.direction("red:1 + curly hair:0.5", beta=0.1)
    np.testing.assert_allclose(d.delta_s, red.delta_s + 0.5 * hair.delta_s, rtol=1e-6)
    same = atlas.compose([("red", 1.0), ("curly hair", 0.5)], beta=0.1)
    np.testing.assert_allclose(same.delta_s, d.delta_s)
    shared = set(np.flatnonzero(red.delta_s)) & set(np.flatnonzero(hair.delta_s))
    (overlap,) = d.overlaps
    assert overlap["shared"] == len(shared) and (overlap["a"], overlap["b"]) == ("red", "curly hair")
    assert overlap["same_sign"] + overlap["opposite_sign"] == len(shared)
    assert [p for p, _, _ in d.components] == ["red", "curly hair"] and d.prompt == "red:1 + curly hair:0.5"
    np.testing.assert_allclose(
        atlas.direction("red + blue:-1", beta=0.1).delta_s,
        red.delta_s - atlas.direction("blue", beta=0.1).delta_s,
        rtol=1e-6,
    )


def test_new_prompt_without_clip_lists_nearest_vocabulary(atlas):
    with pytest.raises(PromptError) as err:
        atlas.direction("curly hairs")
    assert "'curly hair'" in str(err.value) and "not in the atlas vocabulary" in str(err.value)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_is_refused(atlas, prompt):
    with pytest.raises(PromptError, match="empty"):
        atlas.direction(prompt)


class CountingEmbedder:
    """Text embedder protocol: a seeded random unit vector per text; counts calls."""

    dim = 32

    def __init__(self):
        self.calls = 0

    def encode_text(self, texts):
        self.calls += 1
        rows = [torch.randn(32, generator=torch.Generator().manual_seed(sum(map(ord, t)))) for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def test_new_prompt_is_embedded_with_the_atlas_templates(data):
    emb = CountingEmbedder()
    atlas = Atlas(data, embedder=emb, check_fingerprints=False)
    atlas.direction("red", beta=0.05)
    assert emb.calls == 0  # a vocabulary prompt needs no CLIP
    d = atlas.direction("a purple star", beta=0.05)
    assert emb.calls == 1
    atlas.direction("a purple star", beta=0.1)
    assert emb.calls == 1  # cached for the session
    t = emb.encode_text([tpl.replace("{}", "a purple star") for tpl in data.templates]).numpy()
    t = t.mean(0) / np.linalg.norm(t.mean(0))  # template average, re-normalised
    dt = (t - data.neutral_embedding) / np.linalg.norm(t - data.neutral_embedding)
    np.testing.assert_allclose(d.delta_t, dt, atol=1e-5)
    np.testing.assert_allclose(d.scores, data.relevance @ dt, atol=1e-5)


def test_long_prompt_is_truncated_with_a_warning(tiny_clip):
    from models.clip import PromptTruncatedWarning

    atlas = Atlas(synthetic_atlas_data(vocab=VOCAB, dim=tiny_clip.dim), embedder=tiny_clip, check_fingerprints=False)
    with pytest.warns(PromptTruncatedWarning):
        d = atlas.direction("a very " * 60 + "red shape", beta=0.01)
    assert d.num_c >= 1 and np.isfinite(d.delta_s).all()


def test_export_of_100_prompts_equals_100_directions(tmp_path):
    vocab = [f"phrase {i}" for i in range(100)]
    data = synthetic_atlas_data(vocab=vocab, dim=16, seed=7)
    atlas = Atlas(data)
    for beta in (0.15, "auto"):
        lib = compute_library(atlas, vocab, beta=beta)
        for n in range(0, 100, 7):
            try:
                d = atlas.direction(vocab[n], beta=beta)
            except AtlasError:
                assert lib.num_c[n] == 0 and not lib.delta_s[n].any()
                continue
            np.testing.assert_allclose(lib.delta_s[n], d.delta_s, rtol=1e-5, atol=1e-7)
            assert lib.num_c[n] == d.num_c and lib.beta[n] == d.beta
    for suffix in (".h5", ".npz", ".pt"):
        out = tmp_path / f"library{suffix}"
        manifest = export_library(atlas, vocab, out, beta=0.1, styleclip_layout=True)
        assert manifest["num_prompts"] == 100 and manifest_path(out).exists()
        if suffix == ".h5":
            with h5py.File(out, "r") as h5:
                delta_s, layers = h5["delta_s"][()], [h5[f"styleclip/layer_{i:02d}"][()] for i in range(8)]
                assert list(h5["prompts"].asstr()[()]) == vocab
        elif suffix == ".npz":
            z = np.load(out)
            delta_s, layers = z["delta_s"], [z[f"styleclip_layer_{i:02d}"] for i in range(8)]
        else:
            obj = torch.load(out, weights_only=True)
            delta_s, layers = obj["delta_s"].numpy(), [t.numpy() for t in obj["styleclip"]]
        d = atlas.direction("phrase 42", beta=0.1)
        np.testing.assert_allclose(delta_s[42], d.delta_s, rtol=1e-5, atol=1e-7)
        styles = d.to_styles()
        assert len(layers) == len(data.layers) and not layers[1].any()  # toRGB zero
        for i in range(8):
            np.testing.assert_allclose(layers[i][42], styles[i], rtol=1e-5, atol=1e-7)
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temp files


# --------------------------------------------------------------------------- edits, planted ground truth (helpers)
def test_edit_moves_images_the_planted_way_and_leaves_torgb_alone():
    gen = PlantedColourGenerator()
    atlas = Atlas(planted_data(), generator=gen, check_fingerprints=False)
    ws = atlas.sample_ws(range(16), psi=0.7)  # [16, 8]
    before = atlas.render(ws)
    red = atlas.direction("red", beta=0.2)
    assert red.top(1)[0][:2] == (0, 2) and red.num_c == 1
    for w in (ws, ws[:, None].expand(-1, 4, -1)):  # W and W+
        after = atlas.edit(w, red, alpha=3)
        assert (after[:, 0].mean((1, 2)) > before[:, 0].mean((1, 2)) + 0.01).all()  # redder, every sample
        np.testing.assert_allclose(after[:, 1:], before[:, 1:], atol=1e-6)  # green and blue untouched
    down = atlas.edit(ws, red, alpha=-3)
    assert (down[:, 0].mean((1, 2)) < before[:, 0].mean((1, 2))).all()
    styles = gen.styles(ws)
    edited = atlas.apply(styles, red, 5.0)
    for i in gen.rgb_layers:
        assert torch.equal(edited[i], styles[i])
    r = atlas.row(0, 2)
    assert torch.allclose(edited[0][:, 2] - styles[0][:, 2], torch.tensor(5.0 * red.delta_s[r]))
    green = atlas.direction("green", beta=0.2)
    after = atlas.edit(ws, green, alpha=3)
    assert (after[:, 1].mean((1, 2)) > before[:, 1].mean((1, 2))).all()


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), "x"])
def test_edit_refuses_non_finite_alpha(alpha):
    atlas = Atlas(planted_data(), generator=PlantedColourGenerator(), check_fingerprints=False)
    with pytest.raises(AtlasError, match="alpha"):
        atlas.edit(torch.zeros(1, 8), atlas.direction("red", beta=0.2), alpha)


@pytest.mark.parametrize("shape", [(8,), (2, 7), (2, 3, 8), (1, 4, 8, 1)])
def test_edit_refuses_latents_of_the_wrong_shape(shape):
    atlas = Atlas(planted_data(), generator=PlantedColourGenerator(), check_fingerprints=False)
    with pytest.raises(AtlasError, match="latent has shape"):
        atlas.edit(torch.zeros(shape), atlas.direction("red", beta=0.2), 1.0)


def test_edit_without_generator_says_what_to_do():
    atlas = Atlas(planted_data())
    with pytest.raises(AtlasError, match="generator"):
        atlas.edit(torch.zeros(1, 8), atlas.direction("red", beta=0.2), 1.0)


def test_channel_words_name_the_planted_channels():
    atlas = Atlas(planted_data())
    assert atlas.channel_words(0, 2, k=2)[0][0] == "red"
    assert atlas.channel_words(3, 1, k=3)[0][0] == "green"
    with pytest.raises(AtlasError, match="not in this atlas"):
        atlas.channel_words(1, 0)  # a toRGB layer
