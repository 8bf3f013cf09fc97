"""StyleGAN2 generator: protocol shapes, StyleSpace layout, checkpoint round trips and clear errors."""

import math
import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from models.errors import AtlasError, CheckpointError
from models.ops import make_kernel
from models.stylegan2 import StyleGAN2Generator, load_generator, save_generator, small_generator


def reference_synthesis(gen, ws):
    """Independent rosinality-style ("fused") synthesis from W+: per-sample modulated weights, grouped convs.

    Written from the paper's equations, not from StyleGAN2Generator.synthesize, so agreement checks the
    StyleSpace decomposition and the unfused convolutions together.
    """
    batch = ws.shape[0]

    def modconv(layer, x, w, demodulate=True, up=False):
        s = layer.modulation(w)  # [B, in]
        weight = layer.scale * layer.weight * s[:, None, :, None, None]  # [B, out, in, k, k]
        if demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)[:, :, None, None, None]
        _, out_c, in_c, k, _ = weight.shape
        x = x.reshape(1, batch * in_c, *x.shape[2:])
        if up:
            wt = weight.transpose(1, 2).reshape(batch * in_c, out_c, k, k)
            y = F.conv_transpose2d(x, wt, stride=2, padding=0, groups=batch)
            y = y.reshape(batch, out_c, *y.shape[2:])
            kern = make_kernel([1, 3, 3, 1]) * 4
            y = F.pad(y, [1, 1, 1, 1])
            return F.conv2d(y, kern.expand(out_c, 1, 4, 4), groups=out_c)
        y = F.conv2d(x, weight.reshape(batch * out_c, in_c, k, k), padding=k // 2, groups=batch)
        return y.reshape(batch, out_c, *y.shape[2:])

    def styled(block, x, w, noise, up=False):
        y = modconv(block.conv, x, w, up=up) + block.noise.weight * noise
        return F.leaky_relu(y + block.activate.bias[None, :, None, None], 0.2) * math.sqrt(2)

    def upsample_rgb(img):
        b, c, h, w = img.shape
        z = torch.zeros(b, c, h * 2, w * 2)
        z[:, :, ::2, ::2] = img
        z = F.pad(z, [2, 1, 2, 1])
        return F.conv2d(z, (make_kernel([1, 3, 3, 1]) * 4).expand(c, 1, 4, 4), groups=c)

    noises = [getattr(gen.noises, f"noise_{j}") for j in range(gen.num_layers)]
    x = gen.input.input.repeat(batch, 1, 1, 1)
    x = styled(gen.conv1, x, ws[:, 0], noises[0])
    skip = modconv(gen.to_rgb1.conv, x, ws[:, 1], demodulate=False) + gen.to_rgb1.bias
    for b in range(len(gen.to_rgbs)):
        i = 2 * b + 1
        x = styled(gen.convs[2 * b], x, ws[:, i], noises[i], up=True)
        x = styled(gen.convs[2 * b + 1], x, ws[:, i + 1], noises[i + 1])
        rgb = modconv(gen.to_rgbs[b].conv, x, ws[:, i + 2], demodulate=False) + gen.to_rgbs[b].bias
        skip = rgb + upsample_rgb(skip)
    return skip


@pytest.mark.parametrize("resolution,style_dim,n_mlp,width", [(8, 16, 1, 8), (16, 24, 2, 12), (32, 32, 3, 16)])
def test_protocol_shapes(resolution, style_dim, n_mlp, width):
    gen = small_generator(seed=1, resolution=resolution, style_dim=style_dim, n_mlp=n_mlp, width=width)
    log = int(math.log2(resolution))
    assert (gen.z_dim, gen.w_dim, gen.resolution) == (style_dim, style_dim, resolution)
    assert gen.num_ws == 2 * log - 2
    assert len(gen.style_dims) == 3 * (log - 2) + 2
    assert gen.rgb_layers == list(range(1, len(gen.style_dims), 3))
    z = torch.randn(3, gen.z_dim)
    w = gen.mapping(z)
    assert w.shape == (3, style_dim) and gen.mean_w.shape == (style_dim,)
    styles = gen.styles(w)
    assert [s.shape[1] for s in styles] == gen.style_dims and all(s.shape[0] == 3 for s in styles)
    img = gen.synthesize(styles)
    assert img.shape == (3, 3, resolution, resolution) and torch.isfinite(img).all()


def test_ffhq_config_f_stylespace_layout():
    gen = StyleGAN2Generator(resolution=1024)  # config-f: channel_multiplier 2, style_dim 512, 8 mapping layers
    assert len(gen.style_dims) == 26 and sum(gen.style_dims) == 9088
    conv = [d for i, d in enumerate(gen.style_dims) if i not in gen.rgb_layers]
    assert len(conv) == 17 and sum(conv) == 6048
    assert gen.rgb_layers == list(range(1, 26, 3)) and gen.num_ws == 18
    assert conv[:10] == [512] * 10 and conv[10:] == [256, 256, 128, 128, 64, 64, 32]
    layers = gen.style_layers
    assert [(l["kind"], l["resolution"], l["w_index"]) for l in layers[:5]] == [
        ("conv", 4, 0),
        ("torgb", 4, 1),
        ("conv", 8, 1),
        ("conv", 8, 2),
        ("torgb", 8, 3),
    ]
    assert sum(p.numel() for p in gen.parameters()) > 28_000_000


def test_stylespace_path_matches_independent_wplus_synthesis():
    gen = small_generator(seed=2, resolution=32, style_dim=32, n_mlp=2, width=16)
    with torch.no_grad():
        wp = gen.mapping(torch.randn(2 * gen.num_ws, 32)).reshape(2, gen.num_ws, 32)
        ours = gen.synthesize(gen.styles(wp))
        ref = reference_synthesis(gen, wp)
    assert (ours - ref).abs().max() < 1e-4


def test_w_path_equals_stylespace_path_and_truncation():
    gen = small_generator(seed=3)
    z = torch.randn(4, gen.z_dim)
    with torch.no_grad():
        via_forward = gen(z, psi=0.7)
        w = gen.mean_w + 0.7 * (gen.mapping(z) - gen.mean_w)
        via_styles = gen.synthesize(gen.styles(w))
        via_wplus = reference_synthesis(gen, w[:, None].repeat(1, gen.num_ws, 1))
    assert torch.equal(via_forward, via_styles)
    assert (via_forward - via_wplus).abs().max() < 1e-4


def test_style_affines_are_the_w_to_s_maps_of_the_style_layers():
    gen = small_generator(seed=3)
    ws = torch.randn(2, gen.num_ws, gen.w_dim, generator=torch.Generator().manual_seed(0))
    affines, records = gen.style_affines(), gen.style_layers
    assert len(affines) == len(records) == len(gen.style_dims)
    with torch.no_grad():
        for affine, record, s in zip(affines, records, gen.styles(ws)):
            assert affine.weight.shape == (record["width"], gen.w_dim)
            assert torch.equal(affine(ws[:, record["w_index"]]), s)


def test_gradients_flow_to_w_and_styles():
    gen = small_generator(seed=4, resolution=16)
    w = gen.mapping(torch.randn(2, gen.z_dim)).detach().requires_grad_(True)
    gen(torch.zeros(1, gen.z_dim))  # smoke: forward from z
    gen.synthesize(gen.styles(w)).square().mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    styles = [s.detach().requires_grad_(True) for s in gen.styles(w.detach())]
    gen.synthesize(styles).mean().backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in styles)


def test_noise_modes():
    gen = small_generator(seed=5, resolution=16, noise_strength=0.5)
    styles = gen.styles(gen.sample_ws(2, seed=0))
    with torch.no_grad():
        const = gen.synthesize(styles, "const")
        assert torch.equal(const, gen.synthesize(styles, "const"))
        assert not torch.allclose(const, gen.synthesize(styles, "none"))
        r1 = gen.synthesize(styles, "random", generator=torch.Generator().manual_seed(1))
        r2 = gen.synthesize(styles, "random", generator=torch.Generator().manual_seed(1))
        r3 = gen.synthesize(styles, "random", generator=torch.Generator().manual_seed(2))
    assert torch.equal(r1, r2) and not torch.allclose(r1, r3)
    with pytest.raises(AtlasError, match="noise_mode"):
        gen.synthesize(styles, "sometimes")


def test_seeded_construction_is_reproducible():
    a, b, c = small_generator(seed=7), small_generator(seed=7), small_generator(seed=8)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_save_load_round_trip_is_bit_exact(tmp_path):
    gen = small_generator(seed=6, resolution=32, style_dim=24, n_mlp=3, width=12)
    path = tmp_path / "g.pt"
    save_generator(gen, path)
    back = load_generator(path)
    assert (back.resolution, back.w_dim, back.n_mlp, back.channels) == (32, 24, 3, gen.channels)
    for (k, v), (k2, v2) in zip(gen.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert torch.equal(back.mean_w, gen.mean_w) and back.fingerprint() == gen.fingerprint()
    z = torch.randn(2, 24)
    with torch.no_grad():
        assert torch.equal(gen(z, psi=0.5), back(z, psi=0.5))
    assert not list(tmp_path.glob("*.tmp"))


def test_bare_state_dict_without_latent_avg_gets_mean_w(tmp_path):
    gen = small_generator(seed=9, resolution=16)
    torch.save(gen.state_dict(), tmp_path / "bare.pt")
    back = load_generator(tmp_path / "bare.pt")
    expected = gen.mapping(torch.randn(10_000, gen.z_dim, generator=torch.Generator().manual_seed(0))).mean(0)
    assert (back.mean_w - expected).abs().max() < 1e-5


def test_latent_avg_as_wplus_row_is_accepted(tmp_path):
    gen = small_generator(seed=9, resolution=16)
    torch.save({"g_ema": gen.state_dict(), "latent_avg": gen.mean_w.repeat(gen.num_ws, 1)}, tmp_path / "e4e.pt")
    assert torch.equal(load_generator(tmp_path / "e4e.pt").mean_w, gen.mean_w)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/styleatlas_pwned",))


def _bad_files(tmp_path):
    gen = small_generator(seed=10, resolution=16, width=8)
    good = tmp_path / "good.pt"
    save_generator(gen, good)
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("definitely not a checkpoint")
    torch.save({"d": {"convs.0.0.weight": torch.zeros(1)}}, tmp_path / "disc.pt")
    torch.save(
        {"state_dict": {"mapper.coarse_mapping.mapping.1.weight": torch.zeros(2, 2)}, "opts": {}},
        tmp_path / "mapper.pt",
    )
    sd = gen.state_dict()
    sd["convs.1.conv.weight"] = torch.zeros(1, 8, 5, 3, 3)
    torch.save({"g_ema": sd}, tmp_path / "shapes.pt")
    sd = dict(gen.state_dict())
    sd["style.1.weight"] = torch.full_like(sd["style.1.weight"], float("nan"))
    torch.save({"g_ema": sd}, tmp_path / "nan.pt")
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"g_ema": _Evil()}, f, protocol=2)
    return {
        "missing.pt": "does not exist",
        "truncated.pt": "truncated or corrupt",
        "empty.pt": "empty",
        "text.pt": "not a readable",
        "disc.pt": "discriminator",
        "mapper.pt": "mapper",
        "shapes.pt": "inconsistent shapes",
        "nan.pt": "non-finite",
        "evil.pt": "not loaded for safety",
    }


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    for name, fragment in _bad_files(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_generator(tmp_path / name)
        msg = str(info.value)
        assert fragment in msg and "\n" not in msg, (name, msg)
    assert not os.path.exists("/tmp/styleatlas_pwned")


def test_wrong_latent_and_style_shapes_are_clear_errors():
    gen = small_generator(seed=11, resolution=16)
    with pytest.raises(AtlasError, match="W \\[B, 32\\]"):
        gen.styles(torch.zeros(2, 7))
    styles = gen.styles(torch.zeros(1, 32))
    with pytest.raises(AtlasError, match="style layer 2"):
        gen.synthesize(styles[:2] + [styles[2][:, :3]] + styles[3:])
