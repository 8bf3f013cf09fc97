"""SPEC §3b first-order relevance, and the exact path's prefix reuse and early exit, against the plain exact path."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_generator

import index
from pipeline import jacobian, relevance, run_build, synthesis
from pipeline.cli import main as cli_main
from pipeline.config import RelevanceConfig

BUILD = dict(
    num_images=4,
    num_samples=600,
    stats_chunk_size=200,
    batch_size=8,
    chunk_channels=4,
    vocabulary=["red", "green", "smiling"],
    templates=["a photo of a {}.", "a {}."],
    neutral="shape",
    progress=False,
)


def _stats(gen, n=2000):
    """Per-layer mean / std of the style codes over n psi-0.7 samples (what the stats stage computes)."""
    with torch.no_grad():
        z = torch.randn(n, gen.z_dim, generator=torch.Generator().manual_seed(1))
        styles = gen.styles(gen.truncate(gen.mapping(z), 0.7))
    return [s.double().mean(0).numpy() for s in styles], [s.double().std(0).numpy() for s in styles]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


@pytest.fixture(scope="module")
def tiny():
    return tiny_generator()


def test_jacobian_columns_are_the_derivative_of_the_unit_clip_embedding(tiny, tiny_clip):
    cfg = RelevanceConfig(num_images=2, vjp_batch=5)  # several cotangent chunks, one partial
    styles = relevance.image_styles(tiny, cfg)
    channels = relevance.atlas_channels(relevance.layer_table(tiny, cfg))[::7]
    cols = jacobian.jacobian_columns(tiny, tiny_clip, styles, channels, cfg)  # [K, C, D]
    assert cols.shape == (2, len(channels), tiny_clip.dim)
    h = 1e-2
    with torch.no_grad():
        for j, (l, c) in enumerate(channels):
            plus, minus = [s.clone().double() for s in styles], [s.clone().double() for s in styles]
            plus[l][:, c] += h
            minus[l][:, c] -= h
            e = [
                F.normalize(tiny_clip.encode_image(tiny.synthesize([s.float() for s in x])), dim=-1)
                for x in (plus, minus)
            ]
            fd = (e[0] - e[1]) / (2 * h)  # [K, D] central difference
            cos = F.cosine_similarity(fd, cols[:, j], dim=-1)
            assert (cos > 0.99).all(), (l, c, cos)
            assert torch.allclose(fd.norm(dim=-1), cols[:, j].norm(dim=-1), rtol=0.05)


def test_jacobian_rows_agree_with_exact_rows_on_the_demo_models():
    from models.clip import load_clip
    from models.stylegan2 import load_generator

    gen, clip = load_generator("demo"), load_clip("demo")
    cfg = RelevanceConfig(num_images=4, batch_size=64)
    channels = relevance.atlas_channels(relevance.layer_table(gen, cfg))[::24]  # 28 channels, every layer
    styles = relevance.image_styles(gen, cfg)
    mean, std = _stats(gen)
    exact_rows, exact_cons = relevance.compute_chunk(gen, clip, styles, channels, mean, std, cfg)
    sigma = np.array([std[l][c] for l, c in channels])
    d_sum, d_sq = jacobian.direction_sums(jacobian.jacobian_columns(gen, clip, styles, channels, cfg), sigma, cfg.alpha)
    rows, cons = jacobian.reduce_sums(d_sum, d_sq, cfg.num_images)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    cos = jacobian.row_cosines(rows, exact_rows)
    assert np.median(cos) >= 0.85, np.median(cos)  # 0.92 measured (M = 4; 0.96 at M = 16, benchmarks/relevance.py)
    assert np.median(np.abs(cons - exact_cons)) < 0.2


def test_jacobian_build_records_its_method_and_check_figures(tiny, tiny_clip, tmp_path, capsys):
    report = run_build(tiny, tiny_clip, tmp_path / "j", relevance_method="jacobian", chunk_images=3, **BUILD)
    assert report.status == "complete" and not (tmp_path / "j" / "work").exists()  # image blocks cleaned up too
    data = index.read_atlas(tmp_path / "j")
    assert data.config["relevance"]["method"] == "jacobian"
    assert np.allclose(np.linalg.norm(data.relevance, axis=1), 1, atol=1e-5)
    assert ((data.consistency >= -1 / 3 - 1e-6) & (data.consistency <= 1 + 1e-6)).all()
    rel = data.extra["relevance"]
    assert rel["method"] == "jacobian" and rel["check_channels"] == 8
    assert 0 < rel["cosine_vs_exact_median"] <= 1 and 0 < rel["floor_cosine_median"] <= 1
    exact = run_build(tiny, tiny_clip, tmp_path / "e", **BUILD)
    assert index.read_atlas(exact.path).extra["relevance"] == {"method": "exact"}
    with pytest.raises(Exception, match="relevance.method"):  # another method in the same folder is refused
        run_build(tiny, tiny_clip, tmp_path / "e", relevance_method="jacobian", **BUILD)


def test_dry_run_states_the_memory_and_time_plan(tiny, tiny_clip, tmp_path):
    report = run_build(tiny, tiny_clip, tmp_path / "dry", relevance_method="jacobian", dry_run=True, **BUILD)
    cost = report.relevance_plan
    assert cost["exact_renders"] == 2 * 4 * report.channels
    assert cost["jacobian_forward_equivalents"] == 4 * (1 + 2 * tiny_clip.dim) + 4 * 4 * 8
    assert cost["graph_bytes_per_image"] > 0 and cost["memory_estimate_bytes"] > cost["graph_bytes_per_image"]
    assert cost["time_estimate_seconds"] > 0 and not (tmp_path / "dry").exists()


def test_cli_dry_run_prints_the_jacobian_plan(tmp_path, capsys):
    cli_main(
        [
            "--out",
            str(tmp_path / "d"),
            "--num-images",
            "4",
            "--num-samples",
            "600",
            "--vocabulary",
            "demo",
            "--device",
            "cpu",
            "--relevance-method",
            "jacobian",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert "relevance method jacobian" in out and "forward-equivalents" in out and "jacobian memory" in out


@pytest.mark.parametrize("conv_clamp", [None, 0.5])
def test_staged_synthesis_is_synthesize(conv_clamp):
    from models.stylegan2 import StyleGAN2Generator

    gen = StyleGAN2Generator(16, style_dim=16, n_mlp=2, channels={r: 8 for r in (4, 8, 16)}, conv_clamp=conv_clamp)
    styles = relevance.image_styles(gen, RelevanceConfig(num_images=3))
    with torch.no_grad():
        state = synthesis.start_state(gen, 3, styles[0].dtype)
        staged = synthesis.run_layers(gen, state, styles, 0, len(styles), "const")[1]
        assert torch.equal(staged, gen.synthesize(styles))


@pytest.mark.parametrize("exit_resolution", [None, 8])
def test_prefix_reuse_and_early_exit_against_the_plain_exact_path(tiny, tiny_clip, exit_resolution):
    cfg = RelevanceConfig(num_images=3, batch_size=7, prefix_reuse=False)
    layers = relevance.layer_table(tiny, cfg)
    channels = relevance.atlas_channels(layers)[::3]
    styles = relevance.image_styles(tiny, cfg)
    mean, std = _stats(tiny)
    plain, plain_c = relevance.compute_chunk(tiny, tiny_clip, styles, channels, mean, std, cfg)
    fast, fast_c = relevance.compute_chunk(
        tiny,
        tiny_clip,
        styles,
        channels,
        mean,
        std,
        dataclasses.replace(cfg, prefix_reuse=True, clip_resolution_exit=exit_resolution),
    )
    res = np.array([layers[l]["resolution"] for l in channels[:, 0]])
    late = res > (exit_resolution or 0) if exit_resolution else np.ones(len(channels), bool)
    # prefix reuse is exact: the same rows up to float rounding of other batch shapes
    assert np.allclose(fast[late], plain[late], atol=1e-4) and np.allclose(fast_c[late], plain_c[late], atol=1e-4)
    if exit_resolution:  # channels at <= 8 px are measured on the 8 px skip image instead: other rows
        assert (~late).any() and not np.allclose(fast[~late], plain[~late], atol=1e-3)
        assert np.allclose(np.linalg.norm(fast, axis=1)[np.linalg.norm(plain, axis=1) > 0], 1, atol=1e-5)
