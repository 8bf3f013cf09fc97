"""The first fallback (SPEC §6) and real images (SPEC §9): latent optimisation, the projector, image files, the CLI.

Small seeded models here; the shapes-world acceptance figures are in tests/test_fallbacks_shapes.py.
"""

import json
import math
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import query_error
from PIL import Image

from models.errors import AtlasError, PromptError


@pytest.fixture(scope="module")
def gen():
    from models.stylegan2 import small_generator

    return small_generator(seed=0, resolution=16, width=16)


def reference_lr(t, lr, rampdown=0.25, rampup=0.05):
    """StyleCLIP optimization/run_optimization.py get_lr, written out again."""
    ramp = min(1, (1 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1, t / rampup)


def test_ramped_lr_is_the_reference_schedule():
    from query.losses import ramped_lr

    for t in (0.0, 0.01, 0.05, 0.3, 0.74, 0.8, 0.95, 0.999):
        assert ramped_lr(t, 0.1) == pytest.approx(reference_lr(t, 0.1))
    assert ramped_lr(0.5, 0.1) == pytest.approx(0.1)  # plateau between warm-up and ramp-down


def test_l2_scale_modes(gen):
    from query.losses import l2_scale, w_variance

    class Unit:  # W = std * z: per-element variance 1 (FFHQ's, by convention) or 1/4
        z_dim, mean_w = 64, torch.zeros(64)

        def __init__(self, std):
            self.std = std

        def mapping(self, z):
            return z * self.std

    assert l2_scale(gen, "reference") == 1.0
    assert l2_scale(gen, "generator") == pytest.approx(1 / w_variance(gen))
    assert l2_scale(Unit(1.0), "generator") == pytest.approx(1.0, rel=0.03)  # reference weights as they are
    assert l2_scale(Unit(0.5), "generator") == pytest.approx(4.0, rel=0.03)  # half the spread: 4x the weight
    assert l2_scale(gen, "generator", variance=0.25) == 4.0  # a variance measured already is used as it is
    with pytest.raises(AtlasError, match="l2_norm"):
        l2_scale(gen, "bogus")


def test_optimize_lowers_the_clip_loss_and_returns_w_plus(gen, tiny_clip):
    from query.optimization import optimize

    ws = gen.sample_ws(3, seed=1, psi=0.7)  # [3, w_dim]
    out, curves = optimize(gen, tiny_clip, ws, "a red square", steps=12, lr=0.05, progress=False, return_curves=True)
    assert out.shape == (3, gen.num_ws, gen.w_dim) and torch.isfinite(out).all()
    assert len(curves["clip"]) == 12 and curves["clip"][-1] < curves["clip"][0]
    assert curves["l2"][0] == 0 and curves["l2"][-1] > 0  # the latent moved, the L2 term saw it
    assert curves["identity_used"] is False and curves["lr"][0] == 0.0  # warm-up starts at 0
    assert not torch.equal(out, gen.broadcast(ws))
    assert all(p.requires_grad for p in gen.parameters())  # the generator is left as it was


@pytest.mark.parametrize("augment, latent_noise", [(0, 0.0), (2, 1.0)])
def test_each_image_is_optimised_as_if_alone(gen, tiny_clip, augment, latent_noise):
    from query.optimization import optimize

    ws = gen.sample_ws(3, seed=2, psi=0.7)
    kw = dict(steps=6, augment=augment, latent_noise=latent_noise, progress=False)
    together = optimize(gen, tiny_clip, ws, "blue", **kw)
    alone = torch.cat([optimize(gen, tiny_clip, ws[i : i + 1], "blue", **kw) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-4), (together - alone).abs().max()


def test_latent_noise_follows_the_projector_schedule(gen, tiny_clip, monkeypatch):
    from query.losses import w_variance
    from query.optimization import optimize

    seen = []
    styles = gen.styles
    monkeypatch.setattr(gen, "styles", lambda ws: seen.append(ws.detach().clone()) or styles(ws))
    ws = gen.sample_ws(2, seed=5, psi=0.7)
    steps, ramp, strength = 8, 0.5, 1.5
    # an lr this small leaves the latent where it started, so what the generator is shown minus the start is the noise
    optimize(gen, tiny_clip, ws, "red", steps=steps, lr=1e-12, latent_noise=strength, noise_ramp=ramp, seed=3,
             augment=0, progress=False)  # fmt: skip
    rendered = seen[-steps:]  # the source's render (identity off: none) and the steps
    start = gen.broadcast(ws)
    rng = torch.Generator().manual_seed(3)
    std = w_variance(gen) ** 0.5
    for i, seen_ws in enumerate(rendered):
        scale = std * strength * max(0.0, 1 - i / steps / ramp) ** 2
        if scale > 0:
            expected = start + torch.randn(gen.num_ws, gen.w_dim, generator=rng) * scale  # one draw for the batch
        else:
            expected = start  # the noise is gone after ramp x steps
        assert torch.allclose(seen_ws, expected, atol=1e-5), (i, (seen_ws - expected).abs().max())
    assert (rendered[0] - start).std() > 0.5 * std * strength  # step 0 is noisy


def test_latent_spread_counts_only_the_layers_moving_apart():
    from query.losses import latent_spread

    g = torch.Generator().manual_seed(0)
    source = torch.randn(2, 5, 4, generator=g)  # a W+ start whose layers differ (an e4e code)
    together = source + torch.randn(2, 1, 4, generator=g)  # every layer moved alike: an edit in W
    assert torch.allclose(latent_spread(together, source), torch.zeros(2), atol=1e-5)
    apart = source.clone()
    apart[0, 2] += torch.tensor([1.0, 0.0, 0.0, 0.0])  # one layer of image 0 moved by 1 along one axis
    # its change is 1 in that layer, 0 in the other four; the mean change 1/5: 4/5^2 + 4 x 1/5^2 = 0.8
    assert torch.allclose(latent_spread(apart, source), torch.tensor([0.8, 0.0]), atol=1e-6)


def test_the_spread_term_keeps_the_edit_near_w(gen, tiny_clip):
    from query.losses import latent_spread
    from query.optimization import optimize

    ws = gen.sample_ws(2, seed=4, psi=0.7)  # a W start: all layers alike
    start = gen.broadcast(ws)
    kw = dict(steps=10, lr=0.05, augment=0, latent_noise=0.0, progress=False, return_curves=True)
    free, free_curves = optimize(gen, tiny_clip, ws, "a red square", spread_lambda=0.0, **kw)
    held, held_curves = optimize(gen, tiny_clip, ws, "a red square", **kw)  # the default weight
    assert free_curves["spread"] == [0.0] * 10 and held_curves["spread"][0] == 0.0 < held_curves["spread"][-1]
    assert held_curves["config"]["spread_lambda"] == 0.08
    free_spread, held_spread = latent_spread(free, start), latent_spread(held, start)  # [2] each
    assert (free_spread > 0.5).all()  # W+ optimisation pulls the layers apart (measured 1.8-2.4)
    assert (held_spread < 0.1 * free_spread).all()  # the term holds them together (measured 0.03-0.05)
    assert (held - start).mean(1).norm() > 0.1  # the edit itself still moves (in W)
    assert held_curves["clip"][-1] < held_curves["clip"][0] - 0.01


def test_optimize_refuses_bad_noise_settings(gen, tiny_clip):
    from query.optimization import optimize

    ws = gen.sample_ws(1, seed=0, psi=0.7)
    for kw in (
        dict(latent_noise=-1.0),
        dict(latent_noise=float("nan")),
        dict(noise_ramp=0.0),
        dict(noise_ramp=1.5),
        dict(spread_lambda=-0.1),
        dict(spread_lambda=float("inf")),
    ):
        with pytest.raises(AtlasError, match="latent_noise|noise_ramp|spread_lambda"):
            optimize(gen, tiny_clip, ws, "red", steps=1, progress=False, **kw)
    optimize(gen, tiny_clip, ws, "red", steps=1, latent_noise=0.0, noise_ramp=0.0, progress=False)  # off: no ramp


def test_clip_augmentation_views(gen, tiny_clip):
    from query.losses import ClipLoss, random_views

    with torch.no_grad():
        images = gen.synthesize(gen.styles(gen.sample_ws(2, seed=4, psi=0.7)))  # [2, 3, 16, 16]
    pair = torch.cat([images[:1], images[:1], images[1:]])  # the first image twice
    views = random_views(pair, 5, torch.Generator().manual_seed(3))  # [5, 3, 3, 16, 16]
    assert views.shape == (5, *pair.shape)
    assert torch.equal(views[:, 0], views[:, 1])  # one warp per view, shared by the batch
    assert not torch.allclose(views[0], views[1])  # the views differ from each other
    assert (views - pair).abs().amax() > 0.05  # ... and from the image
    again = random_views(pair, 5, torch.Generator().manual_seed(3))
    assert torch.equal(views, again)  # seeded
    plain = ClipLoss(tiny_clip, "blue")(images)
    aug = ClipLoss(tiny_clip, "blue", augment=3, seed=1)
    assert plain.shape == aug(images).shape == (2,)
    expected = 1 - (
        tiny_clip.encode_image(
            random_views(images, 3, torch.Generator().manual_seed(1)).flatten(0, 1), preprocess="pool"
        )
        * aug.text
    ).sum(-1)
    assert torch.allclose(
        ClipLoss(tiny_clip, "blue", augment=3, seed=1)(images), expected.view(3, 2).mean(0), atol=1e-6
    )
    for bad in (-1, 1.5):
        with pytest.raises(AtlasError, match="augment"):
            ClipLoss(tiny_clip, "blue", augment=bad)


class PixelIdentity:
    """A stand-in identity embedder: the normalised, pooled pixels (dim 48)."""

    dim = 48
    lambda_scale = 1.0

    def encode(self, images):
        return torch.nn.functional.normalize(torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1), dim=-1)


@pytest.mark.slow
def test_identity_term_keeps_the_image_closer(gen, tiny_clip):
    from query.optimization import optimize

    ws = gen.sample_ws(2, seed=3, psi=0.7)
    ident = PixelIdentity()
    with torch.no_grad():
        src = gen.synthesize(gen.styles(ws))
    kw = dict(steps=15, lr=0.1, l2_lambda=0.0, progress=False, return_curves=True)
    free, c0 = optimize(gen, tiny_clip, ws, "green", **kw)
    kept, c1 = optimize(gen, tiny_clip, ws, "green", identity=ident, id_lambda=50.0, **kw)
    assert c1["identity_used"] and not c0["identity_used"]
    with torch.no_grad():
        d_free = 1 - (ident.encode(gen.synthesize(gen.styles(free))) * ident.encode(src)).sum(-1)
        d_kept = 1 - (ident.encode(gen.synthesize(gen.styles(kept))) * ident.encode(src)).sum(-1)
    assert float(d_kept.mean()) < float(d_free.mean())


def test_optimize_bad_input(gen, tiny_clip):
    from query.optimization import optimize

    with pytest.raises(AtlasError, match="shape"):
        optimize(gen, tiny_clip, torch.zeros(2, 7), "red", steps=1, progress=False)
    with pytest.raises(PromptError):
        optimize(gen, tiny_clip, gen.sample_ws(1), "  ", steps=1, progress=False)
    with pytest.raises(AtlasError, match="steps"):
        optimize(gen, tiny_clip, gen.sample_ws(1), "red", steps=0, progress=False)
    with pytest.raises(AtlasError, match="preprocess"):
        optimize(gen, tiny_clip, gen.sample_ws(1), "red", steps=1, preprocess="jpeg", progress=False)


def test_reference_preprocessing_feeds_the_raw_image(tiny_clip):
    from query.losses import ClipLoss, reference_clip_input

    x = torch.rand(2, 3, 16, 16) * 2 - 1
    inp = reference_clip_input(tiny_clip, x)
    assert inp.shape == (2, 3, 32, 32)
    assert torch.allclose(inp, x.repeat_interleave(2, 2).repeat_interleave(2, 3), atol=1e-6)  # not normalised
    ref = ClipLoss(tiny_clip, "red", "reference")(x)
    pooled = ClipLoss(tiny_clip, "red", "pool")(x)
    assert ref.shape == pooled.shape == (2,) and not torch.allclose(ref, pooled)


def test_reference_settings_are_styleclips_loop(gen, tiny_clip):
    """With every departure off, optimize is StyleCLIP's run_optimization.py edit loop, written out again here:
    W+ from the codes, Adam, the ramped lr, 1 - cos on the raw image, 0.008 x the raw sum of squares (no identity)."""
    import torch.nn.functional as F

    from query.losses import frozen
    from query.optimization import optimize

    ws = gen.sample_ws(2, seed=6, psi=0.7)
    steps, lr = 8, 0.1
    ours = optimize(gen, tiny_clip, ws, "a red square", steps=steps, lr=lr, preprocess="reference", augment=0,
                    latent_noise=0.0, spread_lambda=0.0, l2_norm="reference", progress=False)  # fmt: skip
    with torch.no_grad():
        text = tiny_clip.encode_text(["a red square"]).float()  # [1, D] unit (its own tests: test_clip.py)
    start = gen.broadcast(ws).detach().clone()
    latent = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=lr)
    with frozen(gen):  # only the latent is optimised
        for i in range(steps):
            opt.param_groups[0]["lr"] = reference_lr(i / steps, lr)
            img = gen.synthesize(gen.styles(latent), noise_mode="const")
            pooled = F.adaptive_avg_pool2d(F.interpolate(img, scale_factor=7, mode="nearest"), tiny_clip.image_size)
            image = F.normalize(tiny_clip.model.encode_image(pooled).float(), dim=-1)
            clip_loss = 1 - (image * text).sum(-1)
            loss = (clip_loss + 0.008 * (latent - start).square().flatten(1).sum(1)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert torch.allclose(ours, latent.detach(), atol=1e-5), (ours - latent).abs().max()


@pytest.mark.slow
def test_invert_recovers_generator_samples(gen):
    from query.images import psnr
    from query.inversion import invert

    ws = gen.sample_ws(4, seed=5, psi=0.7)
    with torch.no_grad():
        target = gen.synthesize(gen.styles(ws))
        start = gen.synthesize(gen.styles(gen.mean_w[None].expand(4, -1)))
    out, details = invert(gen, target, steps=120, progress=False, return_details=True)
    assert out.shape == (4, gen.num_ws, gen.w_dim)
    with torch.no_grad():
        recon = gen.synthesize(gen.styles(out))
    assert details["psnr"] == pytest.approx(psnr(recon, target).tolist(), abs=1e-4)
    assert np.median(details["psnr"]) > float(psnr(start, target).median()) + 8
    assert np.median(details["psnr"]) > 25


def test_invert_with_noise_and_terms(gen, tiny_clip):
    from query.inversion import invert, noise_regularization

    ws = gen.sample_ws(2, seed=6, psi=0.7)
    with torch.no_grad():
        target = gen.synthesize(gen.styles(ws))
    out, details = invert(
        gen,
        target,
        steps=10,
        embedder=tiny_clip,
        identity=PixelIdentity(),
        optimize_noise=True,
        progress=False,
        return_details=True,
    )
    assert len(details["noise"]) == gen.num_layers and details["noise"][0].shape[0] == 2
    assert len(details["psnr_optimized_noise"]) == 2 and details["curves"]["clip"][-1] > 0
    white = [torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))]
    smooth = [torch.nn.functional.interpolate(torch.randn(2, 1, 4, 4), size=16, mode="bilinear")]
    assert float(noise_regularization(smooth).mean()) > 10 * float(noise_regularization(white).mean())
    with pytest.raises(AtlasError, match="px"):
        invert(gen, torch.zeros(1, 3, 8, 8), steps=1, progress=False)
    with pytest.raises(AtlasError):
        invert(gen, torch.zeros(3, 16, 16), steps=1, progress=False)


def test_read_images_crops_resizes_and_refuses_non_images(tmp_path):
    from query.images import psnr, read_images

    pic = np.zeros((40, 60, 3), np.uint8)
    pic[:, 10:50] = (255, 0, 0)  # the centre 40x40 square is red, the side bands black
    Image.fromarray(pic).save(tmp_path / "a.png")
    Image.fromarray(pic).save(tmp_path / "b.jpg", quality=95)
    x = read_images([tmp_path / "a.png", tmp_path / "b.jpg"], 16)
    assert x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x[0, 0], torch.ones(16, 16), atol=1e-2) and float(x[0, 1].max()) < -0.98
    assert float(psnr(x[:1], x[1:])) > 30  # JPEG close to PNG
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(AtlasError, match="not a readable image"):
        read_images([tmp_path / "notes.png"], 16)
    with pytest.raises(AtlasError, match="does not exist"):
        read_images([tmp_path / "none.png"], 16)


# ---- the CLI ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, gen):
    from helpers import tiny_clip_config

    from models.stylegan2 import save_generator

    root = tmp_path_factory.mktemp("fallback_cli")
    save_generator(gen, root / "gen.pt")
    (root / "clip.json").write_text(json.dumps(tiny_clip_config()))
    with torch.no_grad():
        img = gen.synthesize(gen.styles(gen.sample_ws(1, seed=9, psi=0.7)))
    from query.media import to_uint8

    Image.fromarray(to_uint8(img)[0]).resize((48, 40)).save(root / "photo.png")
    return root


def cli_json(files, *args):
    from query.cli import cli

    extra = [
        "--atlas",
        str(files / "no_atlas"),
        "--generator",
        str(files / "gen.pt"),
        "--clip",
        str(files / "clip.json"),
    ]
    result = CliRunner().invoke(cli, [*args, *extra, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_invert_and_optimize(files, gen):
    out = cli_json(files, "invert", str(files / "photo.png"), "-o", str(files / "lat.npy"), "--invert-steps", "30")
    lat = np.load(files / "lat.npy")
    assert lat.shape == (1, gen.num_ws, gen.w_dim) and out["shape"] == list(lat.shape) and out["identity"] == "none"
    assert len(out["psnr"]) == 1 and out["psnr"][0] > 10
    strip = files / "opt.png"
    out = cli_json(
        files,
        "optimize",
        "red",
        "--latent",
        str(files / "lat.npy"),
        "--steps",
        "4",
        "--latent-noise",
        "0.5",
        "--spread-lambda",
        "0.2",
        "-o",
        str(strip),
        "--save-latent",
        str(files / "edited.pt"),
    )
    assert strip.exists() and out["clip_last"] <= out["clip_first"] + 0.05 and len(out["curves"]["loss"]) == 4
    assert out["config"]["latent_noise"] == 0.5 and out["config"]["noise_ramp"] == 0.75
    assert out["config"]["spread_lambda"] == 0.2
    assert torch.load(files / "edited.pt", weights_only=True).shape == (1, gen.num_ws, gen.w_dim)
    with Image.open(strip) as im:
        assert json.loads(im.text["styleatlas"])["prompt"] == "red"
    out = cli_json(
        files,
        "optimize",
        "blue",
        "--image",
        str(files / "photo.png"),
        "--invert-steps",
        "5",
        "--steps",
        "3",
        "-o",
        str(files / "opt2.png"),
    )
    assert len(out["inversion_psnr"]) == 1
    with Image.open(files / "opt2.png") as im:
        assert im.size[0] > 3 * 128  # photo, reconstruction's original, edit


def test_cli_bad_input_is_one_line(files, capsys, tmp_path):
    models = ["--atlas", str(tmp_path), "--generator", str(files / "gen.pt"), "--clip", str(files / "clip.json")]
    (tmp_path / "fake.png").write_text("hello")
    assert "not a readable image" in query_error(
        capsys, "invert", str(tmp_path / "fake.png"), "-o", str(tmp_path / "x.npy"), *models
    )
    np.save(tmp_path / "bad.npy", np.zeros((2, 5), np.float32))
    assert "shape" in query_error(capsys, "optimize", "red", "--latent", str(tmp_path / "bad.npy"), *models)
    torch.save(
        {"state_dict": {"encoder.input_layer.0.weight": torch.zeros(1)}, "latent_avg": torch.zeros(4)},
        tmp_path / "e4e.pt",
    )
    assert "e4e" in query_error(capsys, "optimize", "red", "--identity", str(tmp_path / "e4e.pt"), *models)

    class Boom:
        def __reduce__(self):
            return (print, ("never",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"x": Boom()}, f, protocol=2)
    query_error(
        capsys,
        "invert",
        str(files / "photo.png"),
        "-o",
        str(tmp_path / "x.npy"),
        "--encoder",
        str(tmp_path / "evil.pt"),
        *models,
    )
    assert "not an e4e encoder" in query_error(
        capsys,
        "invert",
        str(files / "photo.png"),
        "-o",
        str(tmp_path / "x.npy"),
        "--encoder",
        str(files / "gen.pt"),
        *models,
    )
    assert ".npy" in query_error(capsys, "invert", str(files / "photo.png"), "-o", str(tmp_path / "x.txt"), *models)
    assert "one of" in query_error(
        capsys, "optimize", "red", "--seed", "1", "--image", str(files / "photo.png"), *models
    )
