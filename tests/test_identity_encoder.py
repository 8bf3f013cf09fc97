"""ArcFace IR-SE50 and the e4e encoder read files in the reference layouts (model_ir_se50.pth, e4e_ffhq_encode.pt)
and match an independent functional forward written here from the state dict; wrong files fail in one line."""

import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from models.errors import AtlasError, CheckpointError

UNITS = (3, 4, 14, 3)  # IR-SE50
DEPTHS = (64, 128, 256, 512)


def irse_plan():
    """(in, depth, stride) per bottleneck, written from InsightFace_Pytorch's get_blocks(50)."""
    plan, in_ch = [], 64
    for depth, n in zip(DEPTHS, UNITS):
        for k in range(n):
            plan.append((in_ch if k == 0 else depth, depth, 2 if k == 0 else 1))
        in_ch = depth
    return plan


def _bn(sd, prefix, c, g):
    sd[prefix + ".weight"] = 1 + 0.1 * torch.randn(c, generator=g)
    sd[prefix + ".bias"] = 0.1 * torch.randn(c, generator=g)
    sd[prefix + ".running_mean"] = 0.1 * torch.randn(c, generator=g)
    sd[prefix + ".running_var"] = 0.5 + torch.rand(c, generator=g)
    sd[prefix + ".num_batches_tracked"] = torch.tensor(7)


def _conv(shape, g):
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) / math.sqrt(fan_in)


def irse_body_state(g, prefix=""):
    """Random tensors under the reference key names of the IR-SE50 stem and body."""
    sd = {}
    sd[prefix + "input_layer.0.weight"] = _conv((64, 3, 3, 3), g)
    _bn(sd, prefix + "input_layer.1", 64, g)
    sd[prefix + "input_layer.2.weight"] = 0.25 + 0.05 * torch.randn(64, generator=g)
    for i, (cin, depth, _) in enumerate(irse_plan()):
        p = f"{prefix}body.{i}."
        if cin != depth:
            sd[p + "shortcut_layer.0.weight"] = _conv((depth, cin, 1, 1), g)
            _bn(sd, p + "shortcut_layer.1", depth, g)
        _bn(sd, p + "res_layer.0", cin, g)
        sd[p + "res_layer.1.weight"] = _conv((depth, cin, 3, 3), g)
        sd[p + "res_layer.2.weight"] = 0.25 + 0.05 * torch.randn(depth, generator=g)
        sd[p + "res_layer.3.weight"] = _conv((depth, depth, 3, 3), g) * 0.5
        _bn(sd, p + "res_layer.4", depth, g)
        sd[p + "res_layer.5.fc1.weight"] = _conv((depth // 16, depth, 1, 1), g)
        sd[p + "res_layer.5.fc2.weight"] = _conv((depth, depth // 16, 1, 1), g)
    return sd


def irse50_state(seed=0):
    """A random model_ir_se50.pth: Backbone(112, 50, 'ir_se', affine=True) keys."""
    g = torch.Generator().manual_seed(seed)
    sd = irse_body_state(g)
    _bn(sd, "output_layer.0", 512, g)
    sd["output_layer.3.weight"] = _conv((512, 512 * 49), g)
    sd["output_layer.3.bias"] = 0.1 * torch.randn(512, generator=g)
    _bn(sd, "output_layer.4", 512, g)
    return sd


# ---- the independent forward: plain functional ops, following the reference modules line by line -------------
def f_bn(x, sd, p):
    return F.batch_norm(
        x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5
    )


def f_body(x, sd, prefix=""):
    x = F.conv2d(x, sd[prefix + "input_layer.0.weight"], padding=1)
    x = F.prelu(f_bn(x, sd, prefix + "input_layer.1"), sd[prefix + "input_layer.2.weight"])
    outs = []
    for i, (cin, depth, stride) in enumerate(irse_plan()):
        p = f"{prefix}body.{i}."
        if cin == depth:
            short = F.max_pool2d(x, 1, stride)
        else:
            short = f_bn(F.conv2d(x, sd[p + "shortcut_layer.0.weight"], stride=stride), sd, p + "shortcut_layer.1")
        r = f_bn(x, sd, p + "res_layer.0")
        r = F.prelu(F.conv2d(r, sd[p + "res_layer.1.weight"], padding=1), sd[p + "res_layer.2.weight"])
        r = f_bn(F.conv2d(r, sd[p + "res_layer.3.weight"], stride=stride, padding=1), sd, p + "res_layer.4")
        s = F.adaptive_avg_pool2d(r, 1)
        s = F.relu(F.conv2d(s, sd[p + "res_layer.5.fc1.weight"]))
        s = torch.sigmoid(F.conv2d(s, sd[p + "res_layer.5.fc2.weight"]))
        x = r * s + short
        outs.append(x)
    return x, outs


def f_arcface(images, sd):
    """StyleCLIP's IDLoss.extract_feats + Backbone.forward."""
    x = images
    if x.shape[2] != 256:
        x = F.adaptive_avg_pool2d(x, (256, 256))
    x = F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], (112, 112))
    x, _ = f_body(x, sd)
    x = f_bn(x, sd, "output_layer.0").flatten(1)
    x = F.linear(x, sd["output_layer.3.weight"], sd["output_layer.3.bias"])
    x = f_bn(x, sd, "output_layer.4")
    return x / x.norm(2, 1, True)


@pytest.fixture(scope="module")
def irse_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("irse") / "model_ir_se50.pth"
    sd = irse50_state(0)
    torch.save(sd, path)
    return path, sd


def test_arcface_matches_the_reference_forward(irse_file):
    from models.identity import load_identity

    path, sd = irse_file
    ident = load_identity(path)
    assert ident.dim == 512
    x = (
        torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    )  # pooled up to 256 as the reference
    with torch.no_grad():
        got, want = ident.encode(x), f_arcface(x, sd)
    assert got.shape == (2, 512)
    assert torch.allclose(got.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(got, want, atol=2e-5), (got - want).abs().max()
    # different images, different identities; the same image, the same one
    assert float((got[0] * got[1]).sum()) < 0.999
    x256 = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ident.encode(x256), f_arcface(x256, sd), atol=2e-5)


def test_identity_refuses_other_files(irse_file, tmp_path):
    from models.identity import load_identity
    from models.stylegan2 import save_generator, small_generator

    _, sd = irse_file
    e4e = tmp_path / "e4e.pt"
    torch.save(
        {"state_dict": {"encoder." + k: v for k, v in list(sd.items())[:5]}, "latent_avg": torch.zeros(8, 32)}, e4e
    )
    with pytest.raises(CheckpointError, match="e4e"):
        load_identity(e4e)
    gen = tmp_path / "g.pt"
    save_generator(small_generator(), gen)
    with pytest.raises(CheckpointError, match="generator"):
        load_identity(gen)
    bad = tmp_path / "evil.pth"

    class Boom:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(bad, "wb") as f:
        pickle.dump({"x": Boom()}, f, protocol=2)
    with pytest.raises(CheckpointError) as err:
        load_identity(bad)
    assert "\n" not in str(err.value)
    torch.save({k: v for k, v in sd.items() if not k.startswith("body.23.")}, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="IR-SE"):
        load_identity(tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_identity(tmp_path / "missing.pth")


# ---- e4e ----------------------------------------------------------------------------------------------------
def e4e_checkpoint(num_ws=8, w_dim=64, seed=0, resolution=32):
    """A random e4e_ffhq_encode.pt-shaped dict: encoder.* (Encoder4Editing), decoder.* (rosinality), latent_avg."""
    from models.stylegan2 import small_generator

    g = torch.Generator().manual_seed(seed)
    enc = irse_body_state(g, "encoder.")
    for i in range(num_ws):
        spatial = 16 if i < 3 else 32 if i < 7 else 64
        for k in range(int(math.log2(spatial))):
            enc[f"encoder.styles.{i}.convs.{2 * k}.weight"] = _conv((w_dim, 512 if k == 0 else w_dim, 3, 3), g)
            enc[f"encoder.styles.{i}.convs.{2 * k}.bias"] = 0.1 * torch.randn(w_dim, generator=g)
        enc[f"encoder.styles.{i}.linear.weight"] = torch.randn(w_dim, w_dim, generator=g)
        enc[f"encoder.styles.{i}.linear.bias"] = 0.1 * torch.randn(w_dim, generator=g)
    enc["encoder.latlayer1.weight"] = _conv((512, 256, 1, 1), g)
    enc["encoder.latlayer1.bias"] = 0.1 * torch.randn(512, generator=g)
    enc["encoder.latlayer2.weight"] = _conv((512, 128, 1, 1), g)
    enc["encoder.latlayer2.bias"] = 0.1 * torch.randn(512, generator=g)
    gen = small_generator(seed=seed, resolution=resolution, style_dim=w_dim)
    for k, v in gen.state_dict().items():
        enc["decoder." + k] = v.clone()
    latent_avg = torch.randn(num_ws, w_dim, generator=g)
    return {
        "state_dict": enc,
        "latent_avg": latent_avg,
        "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": resolution, "start_from_latent_avg": True},
    }, gen


def f_e4e(images, sd, latent_avg, num_ws, w_dim):
    """encoder4editing Encoder4Editing.forward (Inference stage) + latent_avg, from the state dict."""
    x = (
        F.interpolate(images, size=(256, 256), mode="bilinear", antialias=True, align_corners=False)
        if images.shape[-1] != 256
        else images
    )
    _, outs = f_body(x, sd, "encoder.")
    c1, c2, c3 = outs[6], outs[20], outs[23]

    def style(i, feat):
        p = f"encoder.styles.{i}."
        k = 0
        while p + f"convs.{2 * k}.weight" in sd:
            conv = F.conv2d(feat, sd[p + f"convs.{2 * k}.weight"], sd[p + f"convs.{2 * k}.bias"], stride=2, padding=1)
            feat = F.leaky_relu(conv, 0.01)
            k += 1
        feat = feat.view(-1, w_dim)
        return F.linear(feat, sd[p + "linear.weight"] / math.sqrt(w_dim), sd[p + "linear.bias"])

    def up_add(a, lat):
        return F.interpolate(a, size=lat.shape[-2:], mode="bilinear", align_corners=True) + lat

    w0 = style(0, c3)
    w = w0.repeat(num_ws, 1, 1).permute(1, 0, 2).clone()
    features = c3
    for i in range(1, num_ws):
        if i == 3:
            p2 = up_add(c3, F.conv2d(c2, sd["encoder.latlayer1.weight"], sd["encoder.latlayer1.bias"]))
            features = p2
        elif i == 7:
            features = up_add(p2, F.conv2d(c1, sd["encoder.latlayer2.weight"], sd["encoder.latlayer2.bias"]))
        w[:, i] += style(i, features)
    return w + latent_avg.repeat(w.shape[0], 1, 1)


@pytest.fixture(scope="module")
def e4e_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("e4e") / "e4e_ffhq_encode.pt"
    ckpt, gen = e4e_checkpoint()
    torch.save(ckpt, path)
    return path, ckpt, gen


@pytest.mark.slow
def test_e4e_encoder_matches_the_reference_forward(e4e_file):
    from models.encoder import load_encoder

    path, ckpt, _ = e4e_file
    enc = load_encoder(path)
    assert (enc.num_ws, enc.w_dim) == (8, 64)
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        got = enc.encode(x)
        want = f_e4e(x, ckpt["state_dict"], ckpt["latent_avg"], 8, 64)
    assert got.shape == (1, 8, 64)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    small = F.interpolate(x, size=(64, 64), mode="area")  # any size is resized to 256 inside
    with torch.no_grad():
        assert torch.allclose(
            enc.encode(small), f_e4e(small, ckpt["state_dict"], ckpt["latent_avg"], 8, 64), atol=1e-4, rtol=1e-4
        )


def test_load_generator_reads_the_e4e_decoder(e4e_file):
    from models.stylegan2 import load_generator

    path, ckpt, gen = e4e_file
    loaded = load_generator(path)
    assert loaded.resolution == gen.resolution and loaded.num_ws == 8
    assert torch.equal(loaded.mean_w, ckpt["latent_avg"][0])
    ws = gen.sample_ws(2, seed=0)
    with torch.no_grad():
        assert torch.allclose(loaded.synthesize(loaded.styles(ws)), gen.synthesize(gen.styles(ws)), atol=1e-6)


def test_encoder_refuses_other_files(irse_file, tmp_path):
    from models.encoder import load_encoder
    from models.identity import load_identity  # noqa: F401

    path, _ = irse_file
    with pytest.raises(CheckpointError, match="identity"):
        load_encoder(path)
    torch.save(
        {
            "state_dict": {"encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3)},
            "latent_avg": torch.zeros(8, 64),
            "opts": {"encoder_type": "GradualStyleEncoder"},
        },
        tmp_path / "psp.pt",
    )
    with pytest.raises(CheckpointError, match="pSp"):
        load_encoder(tmp_path / "psp.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_encoder(tmp_path / "junk.pt")
    with pytest.raises(AtlasError):
        load_encoder(tmp_path / "missing.pt")


def test_demo_identity_refuses_a_reference_made_for_another_clip():
    from models.clip import load_clip
    from models.errors import CheckpointError
    from models.identity import DemoIdentity

    clip = load_clip("demo")
    with torch.no_grad():
        next(clip.model.parameters()).add_(1e-3)  # a retrained CLIP: the shipped centre no longer fits it
    with pytest.raises(CheckpointError, match="python -m shapes.identity"):
        DemoIdentity(clip, mode="appearance")
