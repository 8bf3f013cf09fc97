"""Stage 5 of the demo generator's trainer (style mixing with attribute-aware targets), and the per-family
disentanglement measures (shapes/families.py) it is judged by."""

import numpy as np
import pytest
import torch

from shapes import style_stats, world
from shapes import train_generator as tg
from shapes.classifier import classify
from shapes.families import best_channels, ends_by_cell, judge_family_edit, pooled_record, recheck_best


def _z(n, seed):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32))


def test_a_mix_takes_colour_and_background_from_the_second_z_and_the_rest_from_the_first():
    first, second = tg.attributes_from_z(_z(64, 0)), tg.attributes_from_z(_z(64, 1))
    mixed = np.arange(64) % 2 == 0
    mix = tg.mix_attributes([first, second], mixed)
    read = classify(world.render(mix))  # the world renderer draws the mix; the classifier reads it back
    for key, source in (("colour", second), ("background", second), ("shape", first), ("size", first)):
        assert (read[key][mixed] == source[key][mixed]).all(), key
        assert (read[key][~mixed] == first[key][~mixed]).all(), key
    assert np.allclose(mix["x"], first["x"]) and np.allclose(mix["rgb"][mixed], second["rgb"][mixed])
    assert (first["colour"][mixed] != second["colour"][mixed]).any()  # the test can fail


def test_a_three_way_mix_takes_the_shape_from_the_middle_z():
    sources = [tg.attributes_from_z(_z(64, s)) for s in (0, 1, 2)]
    mix = tg.mix_attributes(sources, np.ones(64, bool))
    assert (mix["size"] == sources[0]["size"]).all() and np.allclose(mix["x"], sources[0]["x"])
    assert (mix["shape"] == sources[1]["shape"]).all() and (mix["colour"] == sources[2]["colour"]).all()


def test_a_five_way_mix_takes_each_attribute_from_its_own_z():
    sources = [tg.attributes_from_z(_z(64, s)) for s in range(5)]
    mix = tg.mix_attributes(sources, np.ones(64, bool))
    read = classify(world.render(mix))
    assert np.allclose(mix["x"], sources[0]["x"]) and np.allclose(mix["y"], sources[0]["y"])
    for key, k in (("size", 1), ("shape", 2), ("colour", 3), ("background", 4)):
        assert (read[key] == sources[k][key]).all(), key
    assert np.allclose(mix["radius"], sources[1]["radius"]) and np.allclose(mix["brightness"], sources[4]["brightness"])


def test_style_sparsity_is_scale_free_and_smallest_when_few_channels_vary():
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    g = torch.Generator().manual_seed(0)
    conv = [i for i in range(len(gen.style_dims)) if i not in gen.rgb_layers]
    spread = [torch.randn(64, c, generator=g) for c in gen.style_dims]
    few = [s.clone() for s in spread]
    for i in conv:
        few[i][:, 2:] = 1.0  # only two channels vary
    dense, sparse = tg.style_sparsity(gen, spread), tg.style_sparsity(gen, few)
    assert 0 < sparse < 0.3 < 0.7 < dense <= 1
    assert torch.isclose(tg.style_sparsity(gen, [3 * s for s in spread]), dense)  # a layer-wide scale is free
    rgb = [s.clone() for s in spread]
    rgb[gen.rgb_layers[0]][:, 1:] = 0.0  # toRGB layers are not counted
    assert torch.isclose(tg.style_sparsity(gen, rgb), dense)


def test_mixed_batch_switches_w_at_the_splits_only_in_mixed_samples():
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    gen.update_mean_w(n=500)
    for splits in ("5", "3,5", "2,3,5,6", "2,3,5,6,7"):
        for share, expect in ((0.0, False), (1.0, True)):
            cfg = tg.GeneratorTrainConfig(batch_size=6, mixing_share=share, mixing_splits=splits)
            ws, target = tg.mixed_batch(gen, cfg, stage=4, step=0)
            assert ws.shape == (6, gen.num_ws, 64) and target.shape == (6, 3, 32, 32)
            cuts = [int(v) for v in splits.split(",")]
            for lo, hi in zip([0, *cuts], [*cuts, gen.num_ws]):
                assert torch.equal(ws[:, lo], ws[:, hi - 1])  # one w within a segment
            for cut in cuts:
                assert bool((ws[:, cut - 1] != ws[:, cut]).any(1).all()) == expect
    for bad in ("5,3", "1,2,3,4,5,6", "0,5", "8"):
        with pytest.raises(ValueError, match="mixing_splits"):
            tg.mixing_splits(tg.GeneratorTrainConfig(mixing_splits=bad))


def test_the_sixth_z_of_a_mix_decides_nothing_in_the_target():
    sources = [tg.attributes_from_z(_z(64, s)) for s in range(6)]
    mixed = np.ones(64, bool)
    six, five = tg.mix_attributes(sources, mixed), tg.mix_attributes(sources[:5], mixed)
    assert all(np.array_equal(six[k], five[k]) for k in five)
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    gen.update_mean_w(n=500)
    cfg = tg.GeneratorTrainConfig(batch_size=8, mixing_share=1.0, mixing_splits="2,3,5,6,7")
    ws, target, attrs = tg.mixed_batch(gen, cfg, stage=4, step=3, with_attrs=True)
    assert torch.equal(target, world.render(attrs))
    rng = np.random.default_rng([cfg.seed, 4, 3])  # mixed_batch's draws: the six z, in order
    z = torch.from_numpy(rng.standard_normal((6, 8, 64)).astype(np.float32))
    drawn = [tg.attributes_from_z(zj) for zj in z]
    assert all(np.array_equal(attrs[k], tg.mix_attributes(drawn[:5], np.ones(8, bool))[k]) for k in attrs)
    assert not torch.equal(ws[:, 7], ws[:, 6])  # the last w index takes the sixth z, which the target ignores


def test_affine_l1_is_the_mean_absolute_affine_weight():
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    value = tg.affine_l1(gen)
    with torch.no_grad():
        for m, *_ in gen._style_layers:
            m.modulation.weight.mul_(0.5)
    assert torch.isclose(tg.affine_l1(gen), value / 2) and value > 0
    value.backward()  # differentiable: it is a training penalty


def test_per_sample_pixel_loss_averages_to_the_batch_loss_and_hard_weighting_favours_the_worst():
    attrs = world.sample_attributes(6, np.random.default_rng(0))
    target = world.render(attrs)
    fake = target + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    fake[2] = -target[2]  # one sample drawn very badly
    fake.requires_grad_(True)
    each = tg.pixel_loss(fake, target, region_weight=1.0, per_sample=True)
    assert each.shape == (6,) and int(each.argmax()) == 2
    assert torch.isclose(each.mean(), tg.pixel_loss(fake, target, region_weight=1.0))
    assert torch.equal(tg.hard_weighted(each, 0.0), each.mean())
    hard = tg.hard_weighted(each, 1.0)
    assert hard > each.mean()  # the worst sample weighs more than in the plain mean
    grads = [torch.autograd.grad(tg.hard_weighted(each, g), fake, retain_graph=True)[0] for g in (0.0, 1.0)]
    share = [float(gr[2].abs().sum() / gr.abs().sum()) for gr in grads]
    assert share[1] > share[0]  # and its pixels get a larger share of the gradient
    extra = torch.zeros(6)
    extra[4] = 3.0
    grads = [torch.autograd.grad(tg.hard_weighted(each, 0.0, e), fake, retain_graph=True)[0] for e in (None, extra)]
    assert float(grads[1][4].abs().sum() / grads[1].abs().sum()) > float(grads[0][4].abs().sum() / grads[0].abs().sum())


def test_border_weight_adds_the_mean_error_on_the_outer_rings_only():
    target = world.render(world.sample_attributes(4, np.random.default_rng(2)))
    edge, inner = target.clone(), target.clone()
    edge[:, :, 0, :] += 0.5  # the top row: inside the rings
    inner[:, :, 16, 4:28] += 0.5  # the same number of pixels (24) well inside the image
    plain = [tg.pixel_loss(x, target) for x in (edge, inner)]
    ring = [tg.pixel_loss(x, target, border_weight=1.0) - p for x, p in zip((edge, inner), plain)]
    ring_px = 32 * 32 - (32 - 2 * tg.BORDER_PX) ** 2
    assert torch.isclose(ring[0], torch.tensor(0.5 * 32 / ring_px), atol=1e-6) and abs(float(ring[1])) < 1e-6
    each = tg.pixel_loss(edge, target, border_weight=1.0, per_sample=True)
    assert torch.isclose(each.mean(), tg.pixel_loss(edge, target, border_weight=1.0))


def test_focus_z_sets_shape_and_size_and_changes_nothing_else():
    z = torch.randn(3, 200, 64, generator=torch.Generator().manual_seed(0))
    for shape in range(len(world.SHAPES)):
        for size in (0, 1):
            focused = tg.focus_z(z, shape, size)
            attrs = tg.attributes_from_z(focused.reshape(-1, 64))
            assert (attrs["shape"] == shape).all() and (attrs["size"] == size).all()
            others = [i for i in range(64) if i not in (6 + shape, tg.Z_SIZE)]
            assert torch.equal(focused[..., others], z[..., others])


def test_focus_rows_of_a_mixed_batch_draw_the_focused_cell_and_the_rest_stay_as_they_were():
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    gen.update_mean_w(n=500)
    cfg = tg.GeneratorTrainConfig(batch_size=64, mixing_splits="2,3,5,6", focus_share=0.5)
    with torch.no_grad():
        plain_ws, _, plain = tg.mixed_batch(gen, cfg, 4, 7, with_attrs=True)
        ws, _, attrs = tg.mixed_batch(gen, cfg, 4, 7, with_attrs=True, focus=(3, 0))
    focused = (attrs["shape"] == 3) & (attrs["size"] == 0)
    assert 0.3 < focused.mean() < 0.8  # half the rows, and the odd plain small cross
    same = (ws == plain_ws).flatten(1).all(1).numpy()
    assert same.any() and (same | focused).all()  # a row either kept its codes or became a small cross
    assert all((attrs[k][same] == plain[k][same]).all() for k in ("shape", "colour", "size", "background"))


def test_worst_cell_finds_the_cell_a_generator_draws_worst(monkeypatch):
    import shapes.classifier as classifier_module

    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    gen.update_mean_w(n=500)
    real = classifier_module.classify

    def reads_small_triangles_wrong(images):  # a stand-in judge: every shape right except small triangles
        z = torch.randn(512, gen.z_dim, generator=torch.Generator().manual_seed(17))
        attrs = tg.attributes_from_z(z)
        out = dict(real(images))
        out["shape"] = np.where((attrs["shape"] == 2) & (attrs["size"] == 0), 0, attrs["shape"])
        return out

    monkeypatch.setattr(classifier_module, "classify", reads_small_triangles_wrong)
    assert tg.worst_cell(gen, n=512, seed=0) == (2, 0)


def test_misread_flags_images_whose_shape_the_classifier_reads_differently():
    attrs = world.sample_attributes(8, np.random.default_rng(1))
    attrs["shape"] = np.array([3, 3, 0, 1, 2, 3, 1, 0])
    target = world.render(attrs)
    assert not tg.misread(target, target).any()
    drawn = dict(attrs, shape=np.array([3, 0, 0, 1, 2, 3, 3, 0]))  # 1: a circle for a cross, 6: a cross for a square
    assert tg.misread(world.render(drawn), target).tolist() == [0, 1, 0, 0, 0, 0, 1, 0]


def test_distinct_pixels_are_where_the_shape_most_like_the_target_differs_at_its_area():
    attrs = world.sample_attributes(2, np.random.default_rng(2))
    attrs.update(shape=np.array([1, 3]), size=np.zeros(2, int), radius=np.full(2, 4.5, np.float32))
    weight = tg.distinct_pixels(world.render(attrs))[:, 0].numpy()
    cov = world.coverage(attrs)
    cx, cy = world.centres(attrs)
    # a square's most similar shape is the circle of the same area and centre: its rim and the square's corners
    circle = np.clip(0.5 - world.shape_sdf(np.zeros(1, int), cx[:1], cy[:1], [4.5 * 2 * 0.85 / np.sqrt(np.pi)]), 0, 1)
    ref = np.abs(cov[0] - circle[0])
    assert (ref * weight[0]).sum() / np.linalg.norm(ref) / np.linalg.norm(weight[0]) > 0.9
    band = torch.from_numpy(ref > 0)[None, None].float()
    near = torch.nn.functional.max_pool2d(band, 3, stride=1, padding=1)[0, 0].numpy() > 0
    assert weight[0][~near].max() == 0  # zero away from the outlines
    # a cross's weight is its arm tips (inside it) as much as its notches (outside): at the same radius instead,
    # every other shape covers the whole cross, and a loss on the difference would only ever shrink crosses
    inside = (weight[1] * cov[1]).sum() / weight[1].sum()
    assert 0.3 < inside < 0.7


def test_distinct_l1_sees_a_small_square_drawn_as_a_circle_and_nothing_else():
    attrs = world.sample_attributes(2, np.random.default_rng(4))
    attrs.update(shape=np.array([1, 1]), size=np.zeros(2, int), radius=np.full(2, 4.6, np.float32))
    target = world.render(attrs)
    assert tg.distinct_l1(target, target) == 0
    as_circle = world.render(dict(attrs, shape=np.zeros(2, int)))
    weight = tg.distinct_pixels(target)
    far = (torch.nn.functional.max_pool2d(weight, 5, stride=1, padding=2) == 0).expand_as(target)
    off = target.clone()
    off[far] = -off[far]  # every pixel away from the corners changed: the term does not see it
    assert tg.distinct_l1(off, target) == 0 < tg.distinct_l1(as_circle, target)
    # the whole-image pixel loss (edge band weighted x5 already) sees the same circle at a third of that
    assert tg.distinct_l1(as_circle, target) > 2 * tg.pixel_loss(as_circle, target)


def test_distinct_shapes_counts_only_the_named_target_shapes():
    attrs = world.sample_attributes(3, np.random.default_rng(5))
    attrs.update(shape=np.array([1, 2, 3]), size=np.zeros(3, int), radius=np.full(3, 4.6, np.float32))
    target = world.render(attrs)
    every, some = tg.distinct_pixels(target), tg.distinct_pixels(target, "square,cross")
    assert every[1].sum() > 0 and some[1].sum() == 0  # the triangle is left out
    assert torch.equal(some[[0, 2]], every[[0, 2]])
    as_circle = world.render(dict(attrs, shape=np.zeros(3, int)))
    # the left-out sample adds zero; the others weigh what they would with every shape counted
    alone = [tg.distinct_l1(as_circle[[k]], target[[k]]) for k in range(3)]
    assert torch.isclose(tg.distinct_l1(as_circle, target, "square,cross"), (alone[0] + alone[2]) / 3)
    assert torch.isclose(tg.distinct_l1(as_circle, target), sum(alone) / 3)
    with pytest.raises(ValueError, match="distinct_shapes must name shapes"):
        tg.distinct_pixels(target, "square,hexagon")
    with pytest.raises(ValueError, match="distinct_shapes must name shapes"):
        tg.train(tg.GeneratorTrainConfig(distinct_weight=1.0, distinct_shapes="blob"))
    with pytest.raises(SystemExit, match="^error: distinct_shapes must name shapes"):  # the CLI: one line
        tg.main(["--distinct-weight", "1", "--distinct-shapes", "blob"])


def test_the_cli_says_one_line_when_the_init_file_is_not_a_generator(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a generator")
    args = ["--init", str(tmp_path / "bad.pt"), "--mixing-steps", "1", "--work-dir", str(tmp_path / "w")]
    with pytest.raises(SystemExit, match=r"^error: checkpoint .*bad\.pt is not a readable PyTorch file"):
        tg.main([*args, "--out", str(tmp_path / "g.pt")])
    assert not (tmp_path / "g.pt").exists()


def test_stage_5_starts_from_a_trained_generator(tmp_path):
    start = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=3)
    start.update_mean_w(n=500)
    from models.stylegan2 import save_generator

    save_generator(start, str(tmp_path / "start.pt"))
    cfg = tg.GeneratorTrainConfig(
        mixing_steps=2,
        batch_size=4,
        init=str(tmp_path / "start.pt"),
        work_dir=str(tmp_path / "w"),
        out=str(tmp_path / "out.pt"),
        affine_l1=0.1,
        style_sparsity=0.1,
        rgb_spread=0.1,
        perturb_share=0.5,
        perturb_target="group",
        perturb_layers="3,9",
        hard_weight=1.0,
        misread_weight=1.0,
        border_weight=1.0,
        distinct_weight=1.0,
        focus_share=0.25,
        mixing_splits="2,3,5,6",
    )
    trained = tg.train(cfg)
    before, after = start.state_dict(), trained.state_dict()
    assert all(before[k].shape == after[k].shape for k in before)
    # stage 1 would have replaced every weight from the seed-0 initialisation: the rest moved only a little
    fresh = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0).state_dict()
    k = "convs.0.conv.weight"
    assert (after[k] - before[k]).abs().max() < 0.1 < (after[k] - fresh[k]).abs().max()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def _record(layer, channel, valid, **rates):
    full = {**dict(shape=0.0, colour=0.0, size=0.0, background=0.0, position=0.0), **rates}
    return dict(layer=layer, channel=channel, valid=valid, rates=full, shifts=dict(full))


def test_best_channels_prefers_strict_ones_and_reports_side_effects():
    records = [
        _record(0, 1, 1.0, shape=0.4, size=0.05),  # not strict (flip rate < 0.5)
        _record(0, 2, 1.0, shape=0.6, colour=0.3),  # not strict (side effect > 0.1)
        _record(8, 3, 1.0, colour=0.7, background=0.05),  # strict
        _record(8, 4, 0.2, colour=0.9),  # strict but rarely valid: skipped
    ]
    best = best_channels(records)
    assert best["colour"]["single_attribute"] == 1
    assert best["colour"]["best"]["channel"] == 3 and best["colour"]["best"]["strict"]
    assert best["colour"]["best"]["side_effects"]["background"] == 0.05
    assert best["shape"]["single_attribute"] == 0 and not best["shape"]["best"]["strict"]
    assert best["shape"]["best"]["channel"] == 1  # 0.4 - 0.05 beats 0.6 - 0.3
    assert best["size"]["single_attribute"] == 0 and best["size"]["best"]["flip_rate"] == 0.05


def test_best_channels_falls_back_to_continuous_shifts_when_nothing_flips():
    moves = _record(6, 9, 1.0)
    moves["shifts"] = dict(moves["shifts"], size=0.4, colour=0.1)
    best = best_channels([_record(0, 1, 1.0, shape=0.6), moves])
    assert best["size"]["best"]["channel"] == 9 and best["size"]["best"]["shift"] == 0.4
    assert best["size"]["best"]["shift_side_effects"]["colour"] == 0.1 and not best["size"]["best"]["strict"]


def test_pooled_record_weights_each_sample_set_by_its_valid_samples():
    a = _record(5, 78, 1.0, shape=0.5, colour=0.0)  # 16 valid samples, 8 flip
    b = _record(5, 78, 0.5, shape=0.0, colour=0.25)  # 8 valid samples, none flips, 2 change colour
    pooled = pooled_record([a, b], n=16)
    assert pooled["valid"] == 0.75 and (pooled["layer"], pooled["channel"]) == (5, 78)
    assert pooled["rates"]["shape"] == pytest.approx(8 / 24) and pooled["rates"]["colour"] == pytest.approx(2 / 24)
    assert pooled_record([_record(5, 78, 0.0, shape=1.0)], n=16)["rates"]["shape"] == 0.0  # nothing valid


def test_recheck_best_rereads_the_chosen_channels_on_more_sample_sets():
    from models.stylegan2 import small_generator
    from shapes.probe import channel_effects

    gen = small_generator(seed=0, resolution=32, style_dim=16, width=8)
    whole = {(r["layer"], r["channel"]): r for r in channel_effects(gen, n=4, seed=1)}
    some = channel_effects(gen, n=4, seed=1, channels=[(3, 2), (0, 5)])
    assert [(r["layer"], r["channel"]) for r in some] == [(0, 5), (3, 2)]  # the probe's order, the same samples
    assert all(r == whole[(r["layer"], r["channel"])] for r in some)
    with pytest.raises(ValueError, match="not conv StyleSpace channels"):
        channel_effects(gen, n=4, channels=[(1, 0)])  # a toRGB layer
    best = {"shape": dict(best=dict(layer=3, channel=2)), "size": dict(best=None)}
    again = recheck_best(gen, best, sets=2, n=4)
    assert set(again) == {"shape"} and again["shape"]["sets"] == 2 and 0 <= again["shape"]["strict_sets"] <= 2
    by_set = [channel_effects(gen, n=4, seed=s, channels=[(3, 2)])[0] for s in (0, 1)]
    assert again["shape"]["flip_rate"] == round(pooled_record(by_set, 4)["rates"]["shape"], 3)


def test_ends_by_cell_reads_each_cell_of_z_at_both_ends_of_a_channel():
    from models.stylegan2 import load_generator
    from shapes.train_generator import attributes_from_z

    gen = load_generator("demo")
    still = ends_by_cell(gen, 3, 88, n=64, alpha=0.0)  # both ends set the channel to its mean: one image
    assert set(still) == {f"{a} {b}" for a in world.SIZES for b in world.SHAPES}
    # the same 64 samples with that channel at its mean, read directly: per cell of z, how many are valid and
    # drawn as z asked
    g = torch.Generator().manual_seed(100)
    mu, _ = style_stats(gen, 2000, 0.7, rng=g)
    z = torch.randn(64, gen.z_dim, generator=g)
    with torch.no_grad():
        styles = gen.styles(gen.truncate(gen.mapping(z), 0.7))
        styles[3][:, 88] = mu[3][88]
        read = classify(gen.synthesize(styles))
    want = attributes_from_z(z)
    for size, size_name in enumerate(world.SIZES):
        for shape, shape_name in enumerate(world.SHAPES):
            cell = read["valid"] & (want["size"] == size) & (want["shape"] == shape)
            got = still[f"{size_name} {shape_name}"]
            if not cell.any():
                assert got is None
                continue
            assert got["n"] == cell.sum() and got["same"] == 1.0
            assert got["plus"] == got["minus"] == pytest.approx((read["shape"][cell] == shape).mean())
    pushed = ends_by_cell(gen, 3, 88, n=64)  # the shipped size channel: its ends differ for some cell
    assert any(c is not None and (c["same"] < 1 or c["plus"] != c["minus"]) for c in pushed.values())


def test_judge_family_edit_reads_what_changed():
    rng = np.random.default_rng(0)
    attrs = world.sample_attributes(16, rng)
    attrs["size"][:] = 0
    attrs["radius"][:] = 4.5
    before = classify(world.render(attrs))
    grown = dict(attrs, size=np.ones(16, np.int64), radius=np.full(16, 9.0, np.float32))
    judged = judge_family_edit(before, classify(world.render(grown)), "size")
    assert judged["reached"] == judged["grew"] == 1.0 and judged["kept_colour"] == 1.0
    same = judge_family_edit(before, before, "size")
    assert same["reached"] == same["grew"] == 0.0 and same["kept_shape"] == same["kept_position"] == 1.0


def test_channel_figure_moves_only_the_chosen_channel():
    from models.stylegan2 import small_generator
    from shapes.channel_figure import channel_strips, figure

    gen = small_generator(seed=0)
    strips = channel_strips(gen, {"colour": (0, 1), "size": (2, 3)}, alpha=5.0, columns=5, seed=1)
    assert strips.shape == (10, 3, 32, 32)
    centre = gen.synthesize(gen.styles(gen.sample_ws(1, seed=1, psi=0.7)))
    assert torch.allclose(strips[2], centre[0], atol=1e-5) and torch.allclose(strips[7], centre[0], atol=1e-5)
    assert (strips[0] - strips[4]).abs().max() > 1e-3  # -alpha and +alpha differ
    picture = figure(gen, {"colour": (0, 1)}, {"colour": True}, alpha=5.0, seed=1, columns=5)
    assert picture.size[1] == 20 + 68 + 4 and picture.mode == "RGB"


def test_clean_target_redraws_what_the_classifier_reads_and_is_always_a_clean_shape():
    images, attrs = world.sample(32, np.random.default_rng(5))
    noisy = images + 0.15 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    target = tg.clean_target(noisy)
    read, truth = classify(target), classify(images)
    assert read["valid"].all()
    for key in ("shape", "colour", "background"):
        assert (read[key] == truth[key]).mean() >= 0.9, key
    assert (target - images).abs().mean() < (noisy - images).abs().mean() / 3


def _styles_to_push(n: int):
    """(an untrained generator, its style statistics mu and sigma, the styles of n psi-0.7 samples)."""
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    gen.update_mean_w(n=500)
    mu, sigma = style_stats(gen, n=300)
    with torch.no_grad():
        styles = gen.styles(gen.truncate(gen.mapping(torch.randn(n, 64)), 0.7))
    return gen, mu, sigma, styles


def test_perturb_styles_moves_one_conv_channel_per_row_within_the_bound():
    gen, mu, sigma, styles = _styles_to_push(6)
    with torch.no_grad():
        for draw in ("uniform", "sigma"):
            moved, layers = tg.perturb_styles(
                gen, styles, (mu, sigma), np.array([1, 4]), np.random.default_rng(0), 5.0, draw
            )
            assert [l for l, _, _ in _check_one_push_per_row(gen, styles, moved, mu, sigma)] == layers
        pushed = set()
        for seed in range(8):  # pushes confined to the layers asked for, and reaching each of them
            moved, layers = tg.perturb_styles(
                gen, styles, (mu, sigma), np.array([1, 4]), np.random.default_rng(seed), 5.0, layers="3,9"
            )
            assert [l for l, _, _ in _check_one_push_per_row(gen, styles, moved, mu, sigma)] == layers
            pushed.update(layers)
        assert pushed == {3, 9}
    with pytest.raises(ValueError, match="perturb_draw"):
        tg.perturb_styles(gen, styles, (mu, sigma), np.array([1]), np.random.default_rng(0), 5.0, "largest")
    for bad in ("4", "3,11"):  # a toRGB layer, a layer the generator does not have
        with pytest.raises(ValueError, match="perturb_layers"):
            tg.perturb_styles(gen, styles, (mu, sigma), np.array([1]), np.random.default_rng(0), 5.0, layers=bad)


def test_directed_targets_complete_the_size_and_background_change_a_push_began():
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    own = tg.attributes_from_z(_z(4, 0))
    own["size"][:] = 0
    own["radius"][:] = tg.CLASS_RADIUS[0]  # 4.75 px
    own["background"][:] = 0
    own["brightness"][:] = 0.15
    shows = {k: v.copy() for k, v in own.items()}
    shows["radius"][:2] = (7.0, 5.0)  # row 0 grew by 2.25 px, row 1 by 0.25 px
    shows["size"][0] = 1
    shows["brightness"][2:] = (0.6, 0.2)  # row 2 lightened by 0.45, row 3 by 0.05
    images = world.render(shows)
    splits = [2, 3, 5, 6]  # w2: size (style layer 3); w6-w7: background (layers 9, 10)
    layers, rows = [3, 3, 9, 9], np.arange(4)
    done = classify(tg.group_target(gen, splits, own, rows, layers, images, directed=True))
    read = classify(tg.group_target(gen, splits, own, rows, layers, images))
    assert done["size"][0] == 1 and abs(done["radius"][0] - tg.CLASS_RADIUS[1]) < 0.3  # completed: large, 9 px
    assert abs(read["radius"][0] - 7.0) < 0.3  # a target read from the image keeps what the push drew
    assert done["size"][1] == 0 and abs(done["radius"][1] - tg.CLASS_RADIUS[0]) < 0.3  # too small a move: its own
    assert abs(read["radius"][1] - 5.0) < 0.3
    assert done["background"][2] == 1 and abs(done["grey"][2] - world.BRIGHTNESS_RANGE[1][0]) < 0.02
    assert done["background"][3] == 0 and abs(done["grey"][3] - 0.15) < 0.02 and abs(read["grey"][3] - 0.2) < 0.02
    assert (done["shape"] == own["shape"]).all() and (done["colour"] == own["colour"]).all()


def test_directed_size_targets_can_keep_the_centre_the_push_drew():
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    own = tg.attributes_from_z(_z(2, 0))
    own["shape"][:], own["size"][:], own["radius"][:] = world.SHAPES.index("square"), 1, tg.CLASS_RADIUS[1]
    own["x"][:], own["y"][:] = (0.0, 1.0), (0.0, 0.5)  # a large square at the left or right border
    cx, cy = world.centres(own)
    shows = {k: v.copy() for k, v in own.items()}  # pushed small around the same centre, as a size channel does
    shows["size"][:], shows["radius"][:] = 0, tg.CLASS_RADIUS[0]
    half = tg.CLASS_RADIUS[0] * world.EXTENT["square"] + world.MARGIN
    shows["x"], shows["y"] = ((c - half) / (world.RESOLUTION - 2 * half) for c in (cx, cy))
    images = world.render(shows)
    splits, layers, rows = [2, 3, 5, 6], [3, 3], np.arange(2)
    kept = classify(tg.group_target(gen, splits, own, rows, layers, images, directed=True, centre=True))
    moved = classify(tg.group_target(gen, splits, own, rows, layers, images, directed=True))
    assert (kept["size"] == 0).all() and (moved["size"] == 0).all()
    assert np.abs(kept["cx"] - cx).max() < 0.3 and np.abs(kept["cy"] - cy).max() < 0.3
    assert np.abs(moved["cx"] - cx).min() > 3  # own x at the small radius: toward the border by ~3.4 px


def test_directed_shape_targets_complete_a_shape_change_the_push_made():
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    own = tg.attributes_from_z(_z(3, 0))
    square, circle = world.SHAPES.index("square"), world.SHAPES.index("circle")
    own["shape"][:] = square
    before, after = ({k: v.copy() for k, v in own.items()} for _ in range(2))
    after["shape"][0] = circle  # row 0: the push drew a circle where a square was
    before["shape"][2] = after["shape"][2] = circle  # row 2: a circle before the push too, so the push did not
    splits, layers, rows = [2, 3, 5, 6], [5, 5, 5], np.arange(3)  # layer 5 reads w3: the shape segment
    images, unpushed = world.render(after), world.render(before)
    done = classify(tg.group_target(gen, splits, own, rows, layers, images, directed=True, before=unpushed))
    read = classify(tg.group_target(gen, splits, own, rows, layers, images))
    assert done["shape"].tolist() == [circle, square, square]  # row 2 keeps its own: no gain toward a circle
    assert read["shape"].tolist() == [circle, square, circle]  # a target read from the image takes row 2's circle
    assert (done["colour"] == own["colour"]).all() and (done["size"] == own["size"]).all()


def _check_one_push_per_row(gen, styles, moved, mu, sigma, rows=(1, 4)):
    changed = [
        (l, r, c) for l, (a, b) in enumerate(zip(styles, moved)) for r, c in zip(*torch.nonzero(a != b).T.tolist())
    ]
    assert sorted(r for _, r, _ in changed) == list(rows)
    for l, r, c in changed:
        assert l not in gen.rgb_layers
        k = (moved[l][r, c] - mu[l][c]).abs() / sigma[l][c]
        assert 1.0 - 1e-4 <= k <= 5.0 + 1e-4
    return sorted(changed, key=lambda t: t[1])


def test_fresh_samples_says_so_when_the_generator_draws_too_few_clean_shapes():
    from shapes.judge import fresh_samples

    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)  # untrained: noise, never a clean shape
    gen.update_mean_w(n=200)
    with pytest.raises(ValueError, match=r"only 0 of seeds 5\.\.44 are valid and not 'circle'; need 1"):
        fresh_samples(gen, 1, "circle", seed=5)


def test_group_target_takes_only_the_pushed_segments_attributes_from_the_image():
    gen = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0)
    own = tg.attributes_from_z(_z(2, 0))
    shows = tg.attributes_from_z(_z(2, 1))
    shows["shape"] = (own["shape"] + 1) % 4  # what the pushed images show differs in every attribute
    shows["colour"] = (own["colour"] + 1) % 6
    shows["rgb"] = world.COLOUR_RGB[shows["colour"]]
    images = world.render(shows)
    splits = [3, 5]  # segments: w0-2 size and place, w3-4 shape, w5-7 colour and background
    conv = [r for r in gen.style_layers if r["kind"] == "conv"]
    fine = next(r["index"] for r in conv if r["w_index"] >= 5)
    shape = next(r["index"] for r in conv if 3 <= r["w_index"] < 5)
    read = classify(tg.group_target(gen, splits, own, np.array([0, 1]), [fine, shape], images))
    assert read["colour"][0] == shows["colour"][0] and read["shape"][0] == own["shape"][0]  # recoloured only
    assert read["shape"][1] == shows["shape"][1] and read["colour"][1] == own["colour"][1]  # reshaped only
    with pytest.raises(ValueError, match="perturb_target must be clean, group, directed or directed-shape"):
        tg.train(tg.GeneratorTrainConfig(perturb_target="nearest"))


def test_switch_targets_redraw_far_pushes_of_the_switch_channel_in_that_ends_shape():
    gen, mu, sigma, styles = _styles_to_push(5)
    styles = [s.clone() for s in styles]
    attrs = world.sample_attributes(5, np.random.default_rng(2))
    attrs["shape"][:] = 2  # every row a triangle
    switch = dict(layer=5, channel=7, plus=0, minus=3)  # + circle, - cross
    rows, layers = np.arange(5), [5, 5, 5, 3, 5]
    for row, k in zip(rows, (3.0, -2.0, 1.0, 4.0, -1.4)):  # row 3: another layer pushed, the channel is far anyway
        styles[5][row, 7] = mu[5][7] + k * sigma[5][7]
    target = world.render(attrs)
    out = tg.switch_target(target, attrs, rows, layers, styles, (mu, sigma), switch, min_sigma=1.5)
    read, own = classify(out), classify(target)
    assert read["shape"].tolist() == [0, 3, 2, 2, 2]  # the two far pushes switched; below 1.5 sigma, row 3: kept
    for key in ("colour", "size", "background"):
        assert (read[key] == own[key]).all(), key
    assert torch.equal(out[2:], target[2:])
    attrs["shape"][:] = [0, 0, 3, 3, 1]  # a cycle: + the shape after the row's own, - the one before
    target = world.render(attrs)
    layers = [5, 5, 5, 5, 5]
    for row, k in zip(rows, (3.0, -2.0, 2.5, -6.0, 1.2)):
        styles[5][row, 7] = mu[5][7] + k * sigma[5][7]
    cycle = dict(switch, plus=-1, minus=-1)
    assert (cycle["plus"], cycle["minus"]) == tg.switch_ends("cycle")
    out = tg.switch_target(target, attrs, rows, layers, styles, (mu, sigma), cycle, min_sigma=1.5)
    assert classify(out)["shape"].tolist() == [1, 3, 0, 2, 1]  # the last below 1.5 sigma: its own


def test_perturb_styles_pushes_only_the_switch_channel_in_its_layer():
    gen, mu, sigma, styles = _styles_to_push(12)
    switch = dict(layer=5, channel=7, plus=0, minus=1)
    moved, layers = tg.perturb_styles(
        gen, styles, (mu, sigma), np.arange(12), np.random.default_rng(0), 5.0, layers="3,5", switch=switch
    )
    pushes = _check_one_push_per_row(gen, styles, moved, mu, sigma, rows=range(12))
    assert {layer for layer, _, _ in pushes} == {3, 5}  # (layer, row, channel) per pushed row
    assert all(channel == 7 for layer, _, channel in pushes if layer == 5)
    assert len({channel for layer, _, channel in pushes if layer == 3}) > 1  # other layers: drawn as before


def test_pinned_channels_take_every_push_of_their_layer():
    gen, mu, sigma, styles = _styles_to_push(12)
    assert tg.pinned_channels("3:88,9:25") == {3: 88, 9: 25} and tg.pinned_channels("") == {}
    moved, layers = tg.perturb_styles(
        gen, styles, (mu, sigma), np.arange(12), np.random.default_rng(0), 5.0, layers="3,5", pinned={3: 88}
    )
    pushes = _check_one_push_per_row(gen, styles, moved, mu, sigma, rows=range(12))
    assert {layer for layer, _, _ in pushes} == {3, 5}
    assert all(channel == 88 for layer, _, channel in pushes if layer == 3)
    assert len({channel for layer, _, channel in pushes if layer == 5}) > 1
    for bad in ({9: 25}, {3: 128}):  # a layer not pushed, a channel the layer lacks
        with pytest.raises(ValueError, match="pin_channels"):
            tg.perturb_styles(
                gen, styles, (mu, sigma), np.arange(2), np.random.default_rng(0), 5.0, "uniform", "3,5", None, bad
            )
    with pytest.raises(ValueError, match="names a layer twice"):
        tg.pinned_channels("3:88,3:90")
    with pytest.raises(ValueError, match="must pin pushed layers"):  # found before any training
        tg.train(tg.GeneratorTrainConfig(perturb_share=0.5, perturb_layers="3,9", pin_channels="5:7"))
    with pytest.raises(ValueError, match="may not pin a switch layer"):
        tg.train(
            tg.GeneratorTrainConfig(perturb_share=0.5, perturb_layers="3,5", switch_layers="5", pin_channels="5:7")
        )
    for bad in ("3", "3:x", "3:88;9:25"):
        with pytest.raises(ValueError, match="pin_channels must look like"):
            tg.pinned_channels(bad)
    with pytest.raises(ValueError, match="pin_channels needs perturb_share"):
        tg.train(tg.GeneratorTrainConfig(pin_channels="3:88"))


def test_switch_channel_picks_the_shape_layers_best_flipper_and_two_shapes():
    from models.stylegan2 import load_generator
    from shapes.probe import channel_effects

    gen = load_generator("demo")
    stats = style_stats(gen, n=500)
    switch = tg.switch_channel(gen, stats, "6", seed=0)
    assert switch["layer"] == 6 and switch["plus"] != switch["minus"]
    records = [r for r in channel_effects(gen, n=tg.SWITCH_PROBE, seed=1, channels=[(6, c) for c in range(64)])]
    score = {r["channel"]: r["rates"]["shape"] - max(v for a, v in r["rates"].items() if a != "shape") for r in records}
    assert score[switch["channel"]] == max(s for c, s in score.items() if records[c]["valid"] >= 0.5)
    given = tg.switch_channel(gen, stats, "6", seed=0, shapes="circle,cross")  # the same channel, ends as given
    assert given == dict(switch, plus=world.SHAPES.index("circle"), minus=world.SHAPES.index("cross"))
    natural = tg.switch_channel(gen, stats, "6", seed=0, shapes="natural")
    z = torch.randn(tg.SWITCH_LANDING, gen.z_dim, generator=torch.Generator().manual_seed(101))
    with torch.no_grad():
        base = gen.styles(gen.truncate(gen.mapping(z), 0.7))
        reading = classify(gen.synthesize(base, noise_mode="const"))
    value = base[6][:, switch["channel"]].numpy()
    means = [value[reading["valid"] & (reading["shape"] == k)].mean() for k in range(len(world.SHAPES))]
    assert natural == dict(switch, plus=int(np.argmax(means)), minus=int(np.argmin(means)))
    for bad in ("circle", "circle,circle", "circle,star", "circle,cross,square", "natural"):
        with pytest.raises(ValueError, match="switch_shapes"):
            tg.switch_ends(bad)
    with pytest.raises(ValueError, match="switch_layers"):
        tg.switch_channel(gen, stats, "7", seed=0)  # a toRGB layer
    with pytest.raises(ValueError, match="no channel"):
        tg.switch_channel(tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0), stats, "6")  # draws no clean shapes


def test_a_switch_run_keeps_its_channel_across_a_resume(tmp_path, monkeypatch):
    from models.stylegan2 import save_generator

    start = tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=3)
    start.update_mean_w(n=500)
    save_generator(start, str(tmp_path / "start.pt"))
    chosen = []

    def fake_choice(gen, stats, layers, seed=0, shapes=""):  # the real choice reads thousands of images; tested above
        chosen.append(layers)
        return dict(layer=5, channel=len(chosen), plus=0, minus=3)  # a different channel on every call

    monkeypatch.setattr(tg, "switch_channel", fake_choice)
    common = dict(mixing_steps=4, batch_size=4, checkpoint_every=2, init=str(tmp_path / "start.pt"))
    common.update(
        perturb_share=1.0, perturb_layers="3,5", perturb_target="directed", switch_layers="5", focus_share=0.25
    )
    with pytest.raises(ValueError, match="switch_layers"):
        tg.train(tg.GeneratorTrainConfig(**dict(common, perturb_layers="3,9"), work_dir=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="switch_shapes needs switch_layers"):
        tg.train(tg.GeneratorTrainConfig(**dict(common, switch_layers="", switch_shapes="circle,cross")))
    full = tg.train(tg.GeneratorTrainConfig(**common, work_dir=str(tmp_path / "a"), out=str(tmp_path / "a.pt")))
    assert chosen == ["5"]

    calls = {"n": 0}
    real = tg.switch_target

    def flaky(*args, **kwargs):  # every step pushes every row: one call per step; the third is step 2's
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    chosen.clear()
    cfg = tg.GeneratorTrainConfig(**common, work_dir=str(tmp_path / "b"), out=str(tmp_path / "b.pt"))
    monkeypatch.setattr(tg, "switch_target", flaky)
    with pytest.raises(KeyboardInterrupt):
        tg.train(cfg)
    chosen.clear()
    resumed = tg.train(cfg)  # a new choice would push channel 2 instead of channel 1
    assert chosen == [] and calls["n"] == 5
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_bool_field_is_a_flag_and_its_negation():
    from shapes import config_from_args

    parse = lambda *argv: config_from_args(tg.GeneratorTrainConfig, "t", list(argv))  # noqa: E731
    assert parse().directed_centre is False and parse("--directed-centre").directed_centre is True
    assert parse("--directed-centre", "--no-directed-centre").directed_centre is False
    assert parse("--misread-weight", "4").misread_weight == 4.0  # other fields typed as before
