"""One home per formula (issue 10 item 1): every entry point computes the same numbers and says the same thing."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from models.errors import AtlasError, NoDirectionError, PromptError

# ---------------------------------------------------------------------------------------------- Δt (SPEC §4)


def _atlas(**kwargs):
    from query import Atlas
    from query.synthetic import synthetic_atlas_data

    return Atlas(synthetic_atlas_data(**kwargs))


def test_delta_t_is_the_unit_difference_and_rows_agree_with_one_at_a_time():
    from models.directions import delta_t, delta_t_rows

    rng = np.random.default_rng(0)
    t = rng.standard_normal((6, 32)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    rows, defined = delta_t_rows(np.concatenate([t, t[5:]]), t[5])  # the last two rows are the neutral
    assert defined.tolist() == [True] * 5 + [False, False] and not rows[5:].any()
    for i in range(5):
        expected = (t[i] - t[5]) / np.linalg.norm(t[i] - t[5])
        assert np.allclose(delta_t(t[i], t[5]), expected, atol=1e-6)
        assert np.array_equal(delta_t(t[i], t[5]), rows[i])  # one at a time == in a batch, bit for bit


def test_a_target_equal_to_the_neutral_is_one_error_from_every_entry_point():
    from models.directions import NO_DIRECTION, delta_t
    from models.text import text_direction

    atlas = _atlas()
    phrase, t = atlas.data.vocab[3], atlas.data.vocab_embeddings[3]
    raised = []
    for call in (
        lambda: delta_t(t, t),
        lambda: text_direction(torch.from_numpy(t), torch.from_numpy(t)),
        lambda: atlas.delta_t(phrase, phrase),
        lambda: atlas.direction(phrase, neutral=phrase),
    ):
        with pytest.raises(NoDirectionError) as err:
            call()
        raised.append(str(err.value))
    assert raised == [NO_DIRECTION] * 4 and issubclass(NoDirectionError, PromptError)


def test_export_records_a_term_equal_to_the_neutral_as_a_problem_row():
    from query.export import compute_library

    atlas = _atlas()
    neutral = atlas.data.vocab[3]
    lib = compute_library(atlas, [atlas.data.vocab[0], neutral, f"{atlas.data.vocab[1]}:1 + {neutral}:1"], neutral)
    assert lib.num_c[0] > 0 and {p["prompt"] for p in lib.problems} == set(lib.prompts[1:])
    assert np.array_equal(lib.delta_t[0], atlas.delta_t(atlas.data.vocab[0], neutral))


def test_stored_labels_and_channel_words_use_the_same_delta_t():
    from pipeline.labels import compute_labels

    atlas = _atlas(vocab=[f"phrase {i}" for i in range(30)])
    d = atlas.data
    index, score = compute_labels(d.relevance, d.vocab_embeddings, d.neutral_embedding, 3)
    for row in range(0, len(d.channels), 7):
        layer, channel = (int(x) for x in d.channels[row])
        words = atlas.channel_words(layer, channel, k=3)
        assert [w for w, _ in words] == [d.vocab[i] for i in index[row]]
        assert np.allclose([s for _, s in words], score[row], atol=1e-6)


# --------------------------------------------------------------------------------- text files a person writes


def test_every_text_file_reader_follows_one_comment_rule(tmp_path):
    from models.text import load_templates
    from pipeline.vocabulary import read_phrase_file
    from query.prompts import read_prompts

    body = "# a comment\n\n  # an indented comment\n{} red #1\n  a {} photo  \n"
    path = tmp_path / "list.txt"
    path.write_text("\ufeff" + body, encoding="utf-8")
    expected = ["{} red #1", "a {} photo"]  # a '#' later in a line is text
    assert load_templates(path) == read_phrase_file(path) == read_prompts(path) == expected


@pytest.mark.parametrize("content", [None, b"# only a comment\n\n", "\xe9\n".encode("latin-1"), "folder"])
def test_every_text_file_reader_refuses_a_bad_file_with_one_message(tmp_path, content):
    from models.text import load_templates
    from pipeline.vocabulary import read_phrase_file
    from query.prompts import read_prompts

    path = tmp_path / "list.txt"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    messages = []
    for read, what in ((load_templates, "template"), (read_phrase_file, "vocabulary"), (read_prompts, "prompt")):
        with pytest.raises(AtlasError) as err:
            read(path)
        assert str(err.value).startswith(f"{what} file {path} ")
        messages.append(str(err.value).split(str(path))[1].replace("phrase", "X").replace(what, "X"))
    start = {None: " does not exist", b"# only a comment\n\n": " has no Xs", "folder": " is a folder"}
    assert all(m.startswith(start.get(content, " is not UTF-8")) for m in messages)
    assert messages[0] == messages[2]  # templates and prompts: word for word the same sentence


def test_shipped_lists_read_as_before():
    from models.demo import VOCABULARY
    from models.text import load_templates
    from pipeline.vocabulary import FACE_ATTRIBUTES, FUNCTION_WORDS, read_phrase_file

    for path in (VOCABULARY, FACE_ATTRIBUTES, FUNCTION_WORDS):
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
        assert read_phrase_file(path) == [line for line in lines if line and not line.startswith("#")]
    assert len(load_templates()) == 79


# ------------------------------------------------------------------------------------- StyleSpace layout


def test_offsets_split_and_flat_index_agree():
    from models.stylespace import flat_index, layer_offsets, split_layers
    from query.synthetic import stylegan2_layers

    layers = stylegan2_layers([16, 16, 12, 8, 8])
    widths = [l["width"] for l in layers]
    assert layer_offsets(layers).tolist() == layer_offsets(widths).tolist() == [0, *np.cumsum(widths)]
    flat = np.arange(sum(widths), dtype=np.float64)
    parts = split_layers(flat, layers)
    assert [len(p) for p in parts] == widths and np.array_equal(np.concatenate(parts), flat)
    channels = np.array([(l, c) for l, w in enumerate(widths) for c in range(0, w, 3)])
    assert np.array_equal(flat[flat_index(channels, layers)], [parts[l][c] for l, c in channels])


def test_atlas_file_offsets_are_the_layout_offsets(tmp_path):
    import h5py

    import index
    from models.stylespace import layer_offsets
    from query.synthetic import synthetic_atlas_data

    data = synthetic_atlas_data(path=tmp_path)
    with h5py.File(index.write_atlas(data), "r") as h5:
        stored = h5["layers/offset"][()]
    assert stored.dtype == np.int64 and np.array_equal(stored, layer_offsets(data.layers)[:-1])


def test_delta_s_per_layer_is_the_same_for_to_styles_export_and_apply():
    from query.export import styleclip_arrays

    atlas = _atlas()
    d = atlas.direction(atlas.data.vocab[0], beta=0.05)
    per_layer = d.to_styles()
    exported = styleclip_arrays(atlas, d.delta_s[None])
    styles = [torch.zeros(2, int(l["width"])) for l in atlas.data.layers]
    applied = atlas.apply(styles, d, 2.0)
    for l, layer in enumerate(atlas.data.layers):
        assert np.array_equal(exported[l][0], per_layer[l])
        if layer["in_atlas"]:
            assert torch.equal(applied[l], torch.from_numpy(2.0 * per_layer[l]).expand(2, -1))
        else:
            assert applied[l] is styles[l] and not per_layer[l].any()  # toRGB is passed on untouched
    rows = np.flatnonzero(d.delta_s)
    assert [per_layer[l][c] for l, c in atlas.data.channels[rows]] == list(d.delta_s[rows])


# ------------------------------------------------------------------------------------ W latents (SPEC §1)


@pytest.fixture(scope="module")
def gen():
    from models.stylegan2 import small_generator

    return small_generator(seed=0, resolution=16, style_dim=16, width=8)


def test_truncation_is_the_same_from_every_sampler(gen):
    from models.latents import truncate
    from pipeline.common import truncated_w
    from query import Atlas
    from query.mapper_train import training_latents
    from query.synthetic import synthetic_atlas_data

    z = torch.randn(3, gen.z_dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        w = gen.mapping(z)
        expected = gen.mean_w + 0.7 * (w - gen.mean_w)
        assert torch.allclose(truncate(w, gen.mean_w, 0.7), expected, atol=1e-6)
        assert torch.equal(gen.truncate(w, 0.7), truncate(w, gen.mean_w, 0.7))
        assert torch.equal(truncated_w(gen, z, 0.7), truncate(w, gen.mean_w, 0.7))
        assert torch.equal(truncate(w, gen.mean_w, 1), w)  # psi = 1: no truncation at all
        latents = training_latents(gen, num_latents=3, psi=0.7, seed=4)  # [3, num_ws, w_dim]
        assert torch.equal(latents[:, 0], truncate(w, gen.mean_w, 0.7))
        atlas = Atlas(synthetic_atlas_data(), generator=gen, check_fingerprints=False)
        one = torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(9))
        assert torch.equal(atlas.sample_ws([9], psi=0.5), truncate(gen.mapping(one), gen.mean_w, 0.5))


@pytest.mark.parametrize("shape", [(2, 7), (2, 3, 16), (16,), (0, 16)])
def test_a_latent_of_the_wrong_shape_is_one_error_from_every_entry_point(gen, shape, tmp_path):
    from query.atlas import check_latent
    from query.mapper import Mapper, MapperConfig, level_bounds
    from query.media import load_latent

    ws = torch.zeros(shape)
    expected = (
        f"latent has shape {tuple(shape)} (torch.float32); this generator takes W [B, {gen.w_dim}] "
        f"or W+ [B, {gen.num_ws}, {gen.w_dim}] floats."
    )
    mapper = Mapper(MapperConfig("red", gen.num_ws, gen.w_dim, level_bounds(gen.num_ws)))
    for call in (lambda: gen.styles(ws), lambda: check_latent(ws, gen), lambda: mapper(ws)):
        with pytest.raises(AtlasError) as err:
            call()
        assert str(err.value) == expected
    if len(shape) > 1 and shape[0] > 0:  # a file: one code is made a batch of one; an empty file says so
        np.save(tmp_path / "w.npy", np.zeros(shape, np.float32))
        with pytest.raises(AtlasError) as err:
            load_latent(tmp_path / "w.npy", gen.w_dim, gen.num_ws)
        assert str(err.value) == expected


# ----------------------------------------------------------------------------------------- finite numbers


@pytest.mark.parametrize("bad", [math.nan, math.inf, "1"])
def test_a_non_finite_number_is_one_error_from_every_entry_point(bad):
    from models.numbers import check_finite
    from pipeline.config import check_inputs
    from query.mapper_train import train_mapper
    from query.optimization import OptimizeConfig
    from serve.params import float_value

    def say(name, low=None):
        with pytest.raises(AtlasError) as err:
            check_finite(bad, name, low)
        return str(err.value)

    cases = [
        (lambda: check_inputs(alpha=bad), say("alpha")),
        (lambda: check_inputs(psi=bad), say("psi")),
        (lambda: train_mapper(None, None, "red", l2_lambda=bad), say("l2_lambda", 0)),
        (lambda: OptimizeConfig(lr=bad).check(), say("lr", 0)),
    ]
    if bad != "1":  # the page parses text first: "1" is a number there
        cases.append((lambda: float_value(str(bad), "alpha", 0.0, -100, 100), say("alpha")))
    for call, message in cases:
        with pytest.raises(AtlasError) as err:
            call()
        assert str(err.value) == message and "must be a finite number" in message


def test_check_finite_accepts_numpy_numbers_and_bounds():
    from models.numbers import check_finite

    assert check_finite(np.float32(0.5), "lr", low=0) == 0.5 and check_finite(3, "alpha") == 3.0
    with pytest.raises(AtlasError, match=r"lr must be a finite number >= 0, got -1"):
        check_finite(-1, "lr", low=0)


# ----------------------------------------------------------------------------- the relevance cost estimate


@pytest.mark.parametrize("method", ["exact", "jacobian"])
def test_the_dry_run_counts_the_chunks_the_build_writes(tmp_path, method):
    from pipeline.config import BuildConfig, RelevanceConfig
    from pipeline.estimate import chunk_units, done_units, jacobian_seconds, relevance_plan

    r = RelevanceConfig(num_images=5, chunk_images=2, chunk_channels=4, check_channels=3, method=method)
    cfg = BuildConfig(relevance=r)
    plan = dict(dim=8, num_channels=10, templates=["a {}."], phrases=["red", "blue"])

    class Embedder:
        dim = 8

    cost = relevance_plan(None, Embedder(), r, 10, probe=False)
    assert cost["exact_renders"] == 2 * 5 * 10
    assert cost["jacobian_forward_equivalents"] == 5 * (1 + 2 * 8) + 4 * 5 * 3  # SPEC §3b and the exact check
    stage, units = chunk_units(plan, cfg)["relevance"]
    assert len(units) == cost["chunks"]
    planned = cost["jacobian_forward_equivalents"] if method == "jacobian" else cost["exact_renders"]
    assert done_units(tmp_path, plan, cfg, "new")["relevance"] == [0, planned]
    assert done_units(tmp_path, plan, cfg, "complete")["relevance"] == [planned, planned]
    probed = dict(probe_forward_seconds=0.5, probe_backward_seconds=0.25)
    seconds = jacobian_seconds(r, 8, 10, probed)
    jacobian = BuildConfig(relevance=dataclasses.replace(r, method="jacobian"))
    assert len(seconds) == len(chunk_units(plan, jacobian)["relevance"][1])
    assert sum(seconds) == pytest.approx(5 * (0.5 + 8 * 0.25) + 4 * 5 * 3 * 0.5)
