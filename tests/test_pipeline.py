"""build_atlas on a tiny StyleGAN2 and a tiny CLIP: what a user gets in the atlas folder, and what it refuses."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_generator

import index
from models.errors import AtlasError, AtlasFormatError
from models.stylegan2 import small_generator
from pipeline import build_atlas, run_build
from pipeline import stats as stats_stage
from pipeline.config import StatsConfig

VOCAB = ["red", "green", "smiling", "big shape", "shape", "red"]  # duplicate on purpose
TEMPLATES = ["a photo of a {}.", "a {}."]
SMALL = dict(
    num_images=4,
    num_samples=600,
    stats_chunk_size=250,
    stats_batch_size=100,
    batch_size=12,
    chunk_channels=7,
    vocabulary=VOCAB,
    templates=TEMPLATES,
    neutral="shape",
    progress=False,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


@pytest.fixture(scope="module")
def gen():
    return tiny_generator()


@pytest.fixture(scope="module")
def atlas(gen, tiny_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "atlas"
    report = run_build(gen, tiny_clip, out, **SMALL)
    assert report.status == "complete"
    return out


def test_atlas_contents(atlas, gen, tiny_clip):
    data = index.read_atlas(atlas, generator=gen, embedder=tiny_clip)
    conv = [i for i in range(len(gen.style_dims)) if i not in gen.rgb_layers]
    assert data.channels.tolist() == [[l, c] for l in conv for c in range(gen.style_dims[l])]
    assert data.relevance.shape == (len(conv) * 8, tiny_clip.dim) and data.relevance.dtype == np.float32
    assert np.allclose(np.linalg.norm(data.relevance, axis=1), 1, atol=1e-5)
    assert ((-1 <= data.consistency) & (data.consistency <= 1)).all()
    assert [l["in_atlas"] for l in data.layers] == [i in conv for i in range(len(gen.style_dims))]
    assert [l["kind"] for l in data.layers] == [s["kind"] for s in gen.style_layers]
    assert len(data.layer_mean) == len(gen.style_dims)  # toRGB statistics too (the edit needs every std)
    assert data.vocab == ["red", "green", "smiling", "big shape", "shape"] and data.templates == TEMPLATES
    assert data.neutral == "shape"  # as given (a generator other than the demo must be told its class word)
    assert data.config["relevance"]["num_images"] == 4 and data.config["stats"]["num_samples"] == 600
    assert not (atlas / "work").exists()  # removed once the atlas is assembled


def test_style_statistics_match_direct_computation(atlas, gen):
    data = index.read_atlas(atlas)
    z = stats_stage.sample_z(5, 0, 600, gen.z_dim)
    with torch.no_grad():
        s = torch.cat(gen.styles(gen.truncate(gen.mapping(z), 0.7)), 1).double().numpy()  # [600, S]
    assert np.allclose(np.concatenate(data.layer_mean), s.mean(0), rtol=1e-9, atol=1e-9)
    assert np.allclose(np.concatenate(data.layer_std), s.std(0), rtol=1e-6, atol=1e-9)
    rows = [data.layers[l]["index"] for l in data.channels[:, 0]]
    assert np.array_equal(data.style_std, np.array([data.layer_std[l][c] for l, c in zip(rows, data.channels[:, 1])]))


def test_stats_do_not_depend_on_chunking(gen, tmp_path):
    a = StatsConfig(num_samples=600, chunk_size=250, batch_size=100)
    b = StatsConfig(num_samples=600, chunk_size=600, batch_size=37)
    for cfg, out in ((a, tmp_path / "a"), (b, tmp_path / "b")):
        stats_stage.run(gen, cfg, out, list(range(3)), show=False)
    ma, mb = stats_stage.merge(tmp_path / "a", a), stats_stage.merge(tmp_path / "b", b)
    assert np.allclose(ma["mean"], mb["mean"], rtol=0, atol=1e-12) and np.allclose(ma["std"], mb["std"], atol=1e-12)


def test_relevance_does_not_depend_on_batching(gen, tiny_clip, atlas, tmp_path):
    build_atlas(gen, tiny_clip, tmp_path / "b", **{**SMALL, "batch_size": 5, "chunk_channels": 16})
    a, b = index.read_atlas(atlas), index.read_atlas(tmp_path / "b")
    assert np.allclose(a.relevance, b.relevance, atol=2e-5) and np.allclose(a.consistency, b.consistency, atol=2e-5)


def test_labels_are_top_phrases_by_relevance_dot_delta_t(atlas):
    data = index.read_atlas(atlas)
    delta_t = F.normalize(torch.tensor(data.vocab_embeddings - data.neutral_embedding), dim=1).numpy()
    scores = data.relevance @ delta_t.T  # [C, V]
    neutral_row = data.vocab.index("shape")
    assert data.labels_index.shape == (len(data.channels), len(data.vocab))  # vocabulary smaller than k=10
    assert (data.labels_index[:, :-1] != neutral_row).all() and (data.labels_index[:, -1] == -1).all()
    best = np.argsort(-np.where(np.arange(len(data.vocab)) == neutral_row, -np.inf, scores), axis=1)[:, 0]
    assert np.array_equal(data.labels_index[:, 0], best)
    assert np.allclose(data.labels_score[:, 0], scores[np.arange(len(best)), best], atol=1e-5)


def test_catalog_answers_sql(atlas):
    data = index.read_atlas(atlas)
    with index.open_catalog(atlas) as con:
        assert con.execute("SELECT count(*) FROM channels").fetchone()[0] == len(data.channels)
        assert con.execute("SELECT count(*) FROM layers WHERE in_atlas").fetchone()[0] == 5
        top = con.execute("SELECT phrase FROM labels WHERE layer = 0 AND channel = 3 ORDER BY rank LIMIT 1").fetchone()[
            0
        ]
        r = int(np.where((data.channels == [0, 3]).all(1))[0][0])
        assert top == data.vocab[data.labels_index[r, 0]]
        config = json.loads(con.execute("SELECT config FROM builds").fetchone()[0])
        assert config["relevance"]["alpha"] == 5.0


def test_faiss_indexes_match_exact_search(atlas):
    data = index.read_atlas(atlas)
    vocab_index, rel_index = index.load_vocab_index(atlas), index.load_relevance_index(atlas)
    assert vocab_index.ntotal == len(data.vocab) and rel_index.ntotal == len(data.channels)
    _, found = rel_index.search(data.vocab_embeddings[:2], 3)
    assert np.array_equal(found, np.argsort(-(data.vocab_embeddings[:2] @ data.relevance.T), axis=1)[:, :3])
    assert data.extra["indexes"]["relevance"]["recall_at_10"] == 1.0


def test_approximate_index_records_recall(gen, tiny_clip, tmp_path):
    build_atlas(gen, tiny_clip, tmp_path / "hnsw", **{**SMALL, "exact_limit": 4})
    data = index.read_atlas(tmp_path / "hnsw")
    info = data.extra["indexes"]["relevance"]
    assert info["type"] == "IndexHNSWFlat" and info["recall_at_10"] >= 0.9
    assert type(index.load_relevance_index(tmp_path / "hnsw")).__name__ == "IndexHNSWFlat"


def test_other_models_are_refused_naming_both_fingerprints(atlas, gen, tiny_clip):
    other = small_generator(seed=1, resolution=16, style_dim=16, width=8)
    with pytest.raises(AtlasFormatError) as err:
        index.read_atlas(atlas, generator=other)
    data = index.read_atlas(atlas)
    assert data.generator_fingerprint[:16] in str(err.value) and other.fingerprint()[:16] in str(err.value)
    index.read_atlas(atlas, generator=other, check_fingerprints=False)  # the expert override
    from helpers import tiny_clip_config

    from models.clip import load_clip

    with pytest.raises(AtlasFormatError, match="CLIP"):
        index.check_fingerprints(data, embedder=load_clip(tiny_clip_config(), seed=1))
    index.check_fingerprints(data, generator=gen, embedder=tiny_clip)


def test_rerun_is_a_no_op_and_other_settings_are_refused(atlas, gen, tiny_clip):
    assert run_build(gen, tiny_clip, atlas, **SMALL).status == "already complete"
    with pytest.raises(AtlasError, match="num_images"):
        build_atlas(gen, tiny_clip, atlas, **{**SMALL, "num_images": 5})


def test_unfinished_atlas_names_the_missing_stage(gen, tiny_clip, tmp_path):
    report = run_build(gen, tiny_clip, tmp_path / "part", **SMALL, shard="0/2")
    assert report.status == "shard done"
    with pytest.raises(AtlasFormatError, match="relevance stage has 3 of 6 chunks"):
        index.read_atlas(tmp_path / "part")
    with pytest.raises(AtlasFormatError, match="does not exist"):
        index.read_atlas(tmp_path / "nowhere")


def test_bad_options_are_one_sentence_errors(gen, tiny_clip, tmp_path):
    with pytest.raises(AtlasError, match="unknown build option"):
        build_atlas(gen, tiny_clip, tmp_path / "x", num_imagez=3)
    with pytest.raises(AtlasError, match="layers \\[40\\] do not exist"):
        build_atlas(gen, tiny_clip, tmp_path / "x", **SMALL, layers=[0, 40])
    with pytest.raises(AtlasError, match="no style layer"):
        build_atlas(gen, tiny_clip, tmp_path / "x", **SMALL, layers=[1])  # a toRGB layer only


def test_crash_while_assembling_leaves_an_atlas_that_says_so(gen, tiny_clip, atlas, tmp_path, monkeypatch):
    import pipeline.assemble

    def killed(data):
        raise KeyboardInterrupt  # the process dies between atlas.h5 and catalog.duckdb

    monkeypatch.setattr(pipeline.assemble, "write_catalog", killed)
    with pytest.raises(KeyboardInterrupt):
        build_atlas(gen, tiny_clip, tmp_path / "crash", **SMALL)
    assert (tmp_path / "crash" / "atlas.h5").exists()
    with pytest.raises(AtlasFormatError, match="catalog stage did not finish"):
        index.read_atlas(tmp_path / "crash")
    monkeypatch.undo()
    report = run_build(gen, tiny_clip, tmp_path / "crash", **SMALL)
    assert report.status == "complete" and report.images_rendered == 0  # nothing recomputed
    a, b = index.read_atlas(atlas), index.read_atlas(tmp_path / "crash")
    assert np.array_equal(a.relevance, b.relevance) and np.array_equal(a.labels_index, b.labels_index)
    assert not [p.name for p in (tmp_path / "crash").iterdir() if p.name.startswith(".tmp-") or p.name == "work"]


def test_bf16_autocast_relevance_is_close_to_fp32(gen, tiny_clip):
    from pipeline import relevance as rel_stage
    from pipeline.config import RelevanceConfig

    data_cfg = RelevanceConfig(num_images=4, batch_size=16)
    layers = rel_stage.layer_table(gen, data_cfg)
    channels = rel_stage.atlas_channels(layers)[::5]  # [8, 2]
    s_img = rel_stage.image_styles(gen, data_cfg)
    mean = [s.double().mean(0).numpy() for s in s_img]
    std = [s.double().std(0).numpy() + 1e-3 for s in s_img]
    full, _ = rel_stage.compute_chunk(gen, tiny_clip, s_img, channels, mean, std, data_cfg)
    half, _ = rel_stage.compute_chunk(
        gen, tiny_clip, s_img, channels, mean, std, RelevanceConfig(num_images=4, batch_size=16, precision="bf16")
    )
    assert not np.array_equal(full, half)  # it did run in bf16
    assert (full * half).sum(1).min() > 0.95  # the same directions, up to bf16 noise


def test_consistency_closed_form_is_the_mean_pairwise_cosine():
    from pipeline.relevance import reduce_directions

    g = torch.Generator().manual_seed(0)
    e = F.normalize(torch.randn(3, 5, 2, 6, generator=g, dtype=torch.float64), dim=-1)  # [cc, M, 2, D]
    e[2, 1, 1] = e[2, 1, 0]  # one image where the channel changed nothing: d_k = 0, cosine 0 with the rest
    relevance, consistency = reduce_directions(e)
    d = F.normalize(e[:, :, 0] - e[:, :, 1], dim=-1)
    for c in range(3):
        pairs = [float(d[c, i] @ d[c, j]) for i in range(5) for j in range(5) if i != j]
        assert consistency[c].item() == pytest.approx(np.mean(pairs), abs=1e-12)
        assert torch.allclose(relevance[c], F.normalize(d[c].mean(0), dim=0), atol=1e-12)


def test_a_build_by_older_code_resumes_when_the_new_settings_hold_their_defaults(tmp_path):
    """A plan written before relevance.method existed continues; a non-default new setting is refused."""
    from pipeline.build import _check_same
    from pipeline.config import BuildConfig

    new = {"config": BuildConfig().to_dict()}
    old = {
        "config": {
            **new["config"],
            "relevance": {
                k: v
                for k, v in new["config"]["relevance"].items()
                if k not in ("method", "prefix_reuse", "check_channels")
            },
        }
    }
    _check_same(tmp_path, old, new, "a partial build")
    new["config"]["relevance"]["method"] = "jacobian"
    with pytest.raises(AtlasError, match="relevance.method"):
        _check_same(tmp_path, old, new, "a partial build")
