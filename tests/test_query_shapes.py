"""The shapes world end to end: "red" edits make shapes redder and keep their class; red and circle use
different channels. Needs the trained demo models (models/demo/generator.pt, clip_config.json,
clip.safetensors); skipped with the reason when they are not there.

The atlas: $STYLEATLAS_DEMO_ATLAS or ./atlas when it was built with the demo models, else a small build
(8 images per channel, 5,000 samples, the demo vocabulary) into out/test_cache/, named by the two model
fingerprints and reused by later runs (the first takes minutes on two CPU cores; the build resumes if cut):
conftest's `shapes` fixture.
"""

import json

import numpy as np
import torch
from helpers import SHAPES_WORLD

pytestmark = SHAPES_WORLD  # slow; skipped with the reason without the trained demo models


def redness(rgb: np.ndarray) -> np.ndarray:
    """[n, 3] shape colour -> red minus the mean of green and blue."""
    return rgb[:, 0] - (rgb[:, 1] + rgb[:, 2]) / 2


def samples(atlas, n=32):
    """n seeded latents whose rendered image holds one clean shape that is not red already."""
    from shapes import world
    from shapes.classifier import classify

    ws = atlas.sample_ws(range(8 * n), psi=0.7)
    c = classify(atlas.render(ws))
    ok = np.flatnonzero(c["valid"] & (c["colour"] != world.COLOURS.index("red")))[:n]
    assert len(ok) == n, f"only {len(ok)} of {8 * n} samples are clean non-red shapes"
    return ws[torch.as_tensor(ok)], {k: v[ok] for k, v in c.items()}


# SPEC §5: the reference's auto-beta (largest beta in 0.10..0.29 keeping more than 20 channels) and the default
# alpha 4. A fixed beta 0.15 keeps ~77 channels on this 8-image atlas (noisier relevance than the reference's
# 100 images); with the shipped generator it kept the shape in 87.5 % of the 32 samples (redder: 100 %).
RED_EDIT = dict(beta="auto")
ALPHA = 4.0


def test_red_edit_makes_shapes_redder_and_keeps_their_class(shapes):
    from shapes.classifier import classify

    atlas, _ = shapes
    ws, before = samples(atlas)
    d = atlas.direction("red", **RED_EDIT)  # neutral: the atlas's class word, "shape"
    assert d.neutral == "shape" and d.num_c >= 1
    after = classify(atlas.edit(ws, d, alpha=ALPHA))
    redder = redness(after["rgb"]) > redness(before["rgb"]) + 0.02
    same_shape = after["shape"] == before["shape"]
    assert redder.mean() >= 0.9, f"redder in {redder.mean():.0%} of 32 samples"
    assert same_shape.mean() >= 0.9, f"shape kept in {same_shape.mean():.0%} of 32 samples"


def test_red_and_circle_use_different_channels(shapes):
    atlas, _ = shapes
    red, circle = atlas.direction("red", top_k=20), atlas.direction("circle", top_k=20)
    shared = set(np.flatnonzero(red.delta_s)) & set(np.flatnonzero(circle.delta_s))
    assert len(shared) <= 4, f"{len(shared)} of the top 20 channels shared"
    overlap = atlas.direction([("red", 1.0), ("circle", 1.0)], top_k=20).overlaps[0]
    assert overlap["shared"] == len(shared)


def test_cli_edit_with_the_demo_models_by_default(shapes, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from query.cli import cli

    _, path = shapes
    out = tmp_path / "red.png"
    result = CliRunner().invoke(
        cli,
        ["edit", "red", "--atlas", str(path), "--seed", "1", "--alpha", "0,4", "-o", str(out), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    assert numbers["seeds"] == [1] and Image.open(out).text["noise_mode"] == "const"
    (zero, four) = numbers["changes"]
    assert zero["mean_abs_change"] < 1e-6 < four["mean_abs_change"]
