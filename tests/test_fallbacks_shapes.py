"""Shapes-world acceptance of the first fallback (issue 11), judged by the pixel classifier (not CLIP):
optimising toward "circle" makes circles and keeps the colour, toward "red" keeps the shape; the projector
recovers generator samples. Default settings (SPEC §6) with the demo identity. Slow: about a minute each on
an idle 2-core machine. The samples (seed 2) were not used to choose the defaults (seed 1 was).
"""

import numpy as np
import pytest
import torch
from helpers import SHAPES_WORLD

pytestmark = SHAPES_WORLD  # slow; skipped with the reason without the trained demo models

POOL_SEED = 2  # acceptance samples; the defaults were chosen on seed 1


@pytest.fixture(scope="module")
def demo():
    from models.clip import load_clip
    from models.identity import load_identity
    from models.stylegan2 import load_generator

    return load_generator("demo"), load_clip("demo"), load_identity("demo")


def pick(gen, attribute: str, exclude: int, n: int = 12, seed: int = POOL_SEED):
    """n valid psi-0.7 samples whose `attribute` is not `exclude` (by the classifier), and their readings."""
    from shapes.classifier import classify

    ws = gen.sample_ws(8 * n, seed=seed, psi=0.7)
    with torch.no_grad():
        c = classify(gen.synthesize(gen.styles(ws)))
    ok = np.flatnonzero(c["valid"] & (c[attribute] != exclude))[:n]
    assert len(ok) == n
    return ws[torch.as_tensor(ok)], {k: v[ok] for k, v in c.items()}


def edit_and_read(demo, ws, prompt):
    from query.optimization import optimize
    from shapes.classifier import classify

    gen, clip, ident = demo
    torch.manual_seed(0)
    out = optimize(gen, clip, ws, prompt, identity=ident, progress=False)  # CONTRACT defaults
    with torch.no_grad():
        return classify(gen.synthesize(gen.styles(out)))


@pytest.fixture(scope="module")
def circle_edit(demo):
    from shapes import world

    circle = world.SHAPES.index("circle")
    ws, before = pick(demo[0], "shape", circle)
    after = edit_and_read(demo, ws, "circle")
    circles = float((after["shape"] == circle).mean())
    colour_kept = float((after["colour"] == before["colour"]).mean())
    print(f"circle: circles {circles:.2f}, colour kept {colour_kept:.2f}, valid {after['valid'].mean():.2f}")
    return circles, colour_kept


def test_optimize_toward_circle_makes_circles_and_keeps_colour(circle_edit):
    circles, colour_kept = circle_edit
    assert colour_kept >= 0.75, colour_kept
    assert circles >= 1 / 3, circles  # none of the 12 was a circle before


@pytest.fixture(scope="module")
def red_edit(demo):
    from shapes import world

    red = world.COLOURS.index("red")
    ws, before = pick(demo[0], "colour", red)
    after = edit_and_read(demo, ws, "red")
    shape_kept = float((after["shape"] == before["shape"]).mean())
    redder = float(
        (
            (after["rgb"][:, 0] - after["rgb"][:, 1:].mean(1)) > (before["rgb"][:, 0] - before["rgb"][:, 1:].mean(1))
        ).mean()
    )
    print(f"red: shape kept {shape_kept:.2f}, red {float((after['colour'] == red).mean()):.2f}, redder {redder:.2f}")
    return shape_kept, redder


def test_optimize_toward_red_keeps_the_shape_and_reddens(red_edit):
    shape_kept, redder = red_edit
    assert shape_kept >= 0.75, shape_kept
    assert redder >= 0.75, redder  # the edit happens, too


def test_invert_recovers_16_generator_samples(demo):
    from query.inversion import invert

    gen = demo[0]
    ws = gen.sample_ws(16, seed=POOL_SEED, psi=0.7)
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
