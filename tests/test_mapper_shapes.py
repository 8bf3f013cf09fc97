"""The latent mapper and edit_text on the shapes world, judged by the pixel classifier (issue 12 acceptance at
test size). Needs the trained demo models; slow (a 400-step mapper: ~45 s of CPU time)."""

import pytest
import torch
from helpers import SHAPES_WORLD

from shapes.judge import fresh_samples, judge_images, judge_latents

pytestmark = SHAPES_WORLD  # slow; skipped with the reason without the trained demo models


def test_red_mapper_makes_fresh_shapes_redder_and_keeps_their_shape(one_thread):
    from models.clip import load_clip
    from models.stylegan2 import load_generator
    from query import train_mapper

    gen, clip = load_generator("demo"), load_clip("demo")
    mapper = train_mapper(gen, clip, "red", steps=400, batch_size=16, seed=0, progress=False)
    ws, _ = fresh_samples(gen, 32, "red", seed=1000)  # none of these seeds' codes was a training latent
    with torch.no_grad():
        judged = judge_latents(gen, ws, mapper(ws), "red")
    assert judged["redder"] >= 0.9, judged
    # 400 steps of a chaotic descent: the CPU's float rounding moves single samples. The shipped generator (five
    # phases) keeps the shape of 32 of 32 here (seeds 1-4: 29, 30, 32, 32). The four-phase generator (P3) kept 26
    # where the bar was set, and 24 on an AMD EPYC machine (seeds 1-4 there: 25, 26, 26, 26). The bar is 24 of
    # 32, three quarters
    assert judged["kept_shape"] >= 0.75, judged


@pytest.mark.parametrize("prompt", ["blue", "large"])
def test_edit_text_auto_takes_the_global_direction_where_it_works(shapes, prompt):
    # on the shipped generator (five phases), at edit_text's default beta 0.15, blue reaches blue in 11 of these 12
    # samples and keeps the shape of 11, large grows 12 and keeps 11; red, which the generator of stages 1-4 used
    # here, reaches red in 8 of 12 (it makes all 12 redder), too few for this bar, though the auto test now takes
    # the global direction for it. On P3 (four phases), benchmarks/edit_auto.py read blue and large at 12 of 12
    # and red at 7 of 12, declined
    atlas, _ = shapes
    ws, _ = fresh_samples(atlas.generator, 12, prompt, seed=2000)
    result = atlas.edit_text(ws, prompt)
    assert result.method == "global", result.reason
    judged = judge_images(atlas.render(ws), result.images, prompt)
    assert judged["reached"] >= 0.9 and judged["kept_shape"] >= 0.75, judged


@pytest.mark.parametrize("prompt", ["circle", "orange"])
def test_auto_test_rejects_global_directions_that_do_not_reach_the_prompt(shapes, prompt):
    from query.edit_text import clip_movement, global_works

    atlas, _ = shapes
    ws, _ = fresh_samples(atlas.generator, 12, prompt, seed=2000)
    edited = atlas.edit(ws, atlas.direction(prompt), 4.0)
    assert not global_works(clip_movement(atlas, atlas.render(ws), edited, prompt))
