"""Shapes-world acceptance of the first fallback (issue 11), judged by the pixel classifier (not CLIP):
optimising toward "circle" makes circles and keeps the colour, toward "red" keeps the shape; the projector
recovers generator samples. Default settings (SPEC §6, with CLIP augmentation) and the demo identity; the
samples come from shapes.judge.pool_samples (one place to change if seeds map to latents anew). Slow: about
two minutes each on an idle 2-core machine. Figures for more pools and for 1 and 2 threads:
`python benchmarks/fallbacks.py --only-acceptance` (MODEL_CARD.md, "Fallbacks").
"""

import numpy as np
import pytest
import torch
from helpers import SHAPES_WORLD

pytestmark = SHAPES_WORLD  # slow; skipped with the reason without the trained demo models

# acceptance samples (shapes.judge.pool_samples): pool 0, the first valid samples of latent seeds 0 onward, what a
# user trying the edit first gets. The defaults were chosen on pools 1-8 and measured once on pools 9-16; pool 0
# was measured after (MODEL_CARD.md, "Fallbacks"), all on the generator of stages 1-4. On the shipped generator
# (issue 17's five-phase recipe), pools 1-8 give 83 % circles over 96 samples, 67-92 % per pool, and pool 0 meets
# every bar below, circles at exactly 75 % (9 of 12, two threads; so did the four-phase P3's): one pool is a
# check, not the figure.
POOL_SEED = 0
INVERT_SEED = 2
# 300 steps of a chaotic descent: float rounding, which follows the thread count, moves single samples across the
# classifier's boundaries (pool 0 on the previous generator: 75 % circles with one thread, 83 % with two), so the
# count is fixed here
THREADS = 2


@pytest.fixture(scope="module")
def demo():
    from models.clip import load_clip
    from models.identity import load_identity
    from models.stylegan2 import load_generator

    return load_generator("demo"), load_clip("demo"), load_identity("demo")


def edit_pool(demo, prompt: str):
    """optimize(..., prompt) with the CONTRACT defaults and the demo identity on the 12 samples of pool POOL_SEED
    that lack what the prompt asks -> classifier readings before and after."""
    from query.optimization import optimize
    from shapes import torch_threads
    from shapes.classifier import classify
    from shapes.judge import pool_samples

    gen, clip, ident = demo
    ws, before = pool_samples(gen, 12, prompt, POOL_SEED)
    torch.manual_seed(0)
    with torch_threads(THREADS):
        out = optimize(gen, clip, ws, prompt, identity=ident, progress=False)
    with torch.no_grad():
        return before, classify(gen.synthesize(gen.styles(out)))


def test_optimize_toward_circle_makes_circles_and_keeps_colour(demo):
    """Issue 11's targets: >= 75 % circles, >= 75 % colour kept. Shipped generator, one thread, pools 1-8: circles
    83 % of 96 samples, 67-92 % per pool; colour kept 98 % (MODEL_CARD.md, 'Fallbacks'). Pool 0: 75 % and 100 %."""
    from shapes import world

    before, after = edit_pool(demo, "circle")
    circles = float((after["shape"] == world.SHAPES.index("circle")).mean())
    colour_kept = float((after["colour"] == before["colour"]).mean())
    print(f"circle: circles {circles:.2f}, colour kept {colour_kept:.2f}, valid {after['valid'].mean():.2f}")
    assert circles >= 0.75, circles  # none of the 12 was a circle before
    assert colour_kept >= 0.75, colour_kept


@pytest.fixture(scope="module")
def red_edit(demo):
    from shapes import world
    from shapes.judge import redness

    before, after = edit_pool(demo, "red")
    shape_kept = float((after["shape"] == before["shape"]).mean())
    redder = float((redness(after["rgb"]) > redness(before["rgb"]) + 0.02).mean())
    red = float((after["colour"] == world.COLOURS.index("red")).mean())
    print(f"red: shape kept {shape_kept:.2f}, red {red:.2f}, redder {redder:.2f}")
    return shape_kept, redder


def test_optimize_toward_red_keeps_the_shape_and_reddens(red_edit):
    """Issue 11's target: shape kept >= 90 %. Shipped generator, pools 1-8: 98 % of 96 samples, 92-100 % per pool
    (pool 0, two threads: 100 %; MODEL_CARD.md, 'Fallbacks')."""
    shape_kept, redder = red_edit
    assert shape_kept >= 0.9, shape_kept
    # the edit happens, too: 42-83 % redder on pools 1-8 (60.4 % in all; pool 0: 67 %, 8 of 12). Blue and green
    # shapes seldom get redder (blue 13 %, green 16 %), so how many a pool holds sets its figure
    assert redder >= 0.4, redder


def test_invert_recovers_16_generator_samples(demo):
    from query.inversion import invert

    gen = demo[0]
    ws = gen.sample_ws(16, seed=INVERT_SEED, psi=0.7)
    with torch.no_grad():
        target = gen.synthesize(gen.styles(ws))
    _, details = invert(gen, target, steps=150, progress=False, return_details=True)
    median = float(np.median(details["psnr"]))
    print(f"invert: median PSNR {median:.2f} dB (min {min(details['psnr']):.2f})")
    assert median >= 28, details["psnr"]


def test_demo_identities(demo):
    """The default (full) identity changes with shape and colour alike; the appearance one, like ArcFace through
    a change of expression, keeps a new shape or size and changes with a new colour."""
    from models.identity import DemoIdentity
    from shapes import world

    full, appearance = demo[2], DemoIdentity(demo[1], mode="appearance")
    images, attrs = world.sample(200, np.random.default_rng(7))
    changed = {}
    for name in ("shape", "colour", "size"):
        b = {k: v.copy() for k, v in attrs.items()}
        if name == "shape":
            b["shape"] = (b["shape"] + 1) % len(world.SHAPES)
        elif name == "colour":
            b["colour"] = (b["colour"] + 1) % len(world.COLOURS)
            b["rgb"] = world.COLOUR_RGB[b["colour"]]
        else:
            b["size"] = 1 - b["size"]
            b["radius"] = np.where(b["size"] == 1, 9.0, 4.75).astype(np.float32)
        with torch.no_grad():
            other = world.render(b)
            changed[name] = [
                float((1 - (m.encode(images) * m.encode(other)).sum(1)).mean()) for m in (full, appearance)
            ]
    assert min(changed["shape"][0], changed["colour"][0]) > 0.1, changed
    assert changed["colour"][1] > 0.5 > 0.1 > max(changed["shape"][1], changed["size"][1]), changed


def test_sample_pools_never_share_a_sample(demo):
    """Pools are disjoint seed ranges: with one z per seed, overlapping ranges made pools 2, 3 and 4 the same 12."""
    from shapes.judge import pool_samples

    ws = [pool_samples(demo[0], 12, "circle", pool)[0] for pool in (2, 3, 4)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert torch.cdist(ws[i], ws[j]).min() > 1e-3, (i, j)
