"""NVIDIA StyleGAN2-ADA network pickles: safe reading, exact outputs, clear refusals, and the convert command."""

import os
import pickle

import pytest
import torch
from nvidia_snapshot import (
    Persistent,
    fake_nvidia_modules,
    generator_module,
    make_net,
    module,
    nv_forward,
    nv_mapping,
    nv_styles,
    snapshot,
    write_pickle,
)

from models.convert import convert
from models.convert import main as convert_main
from models.errors import CheckpointError
from models.nvidia import read_nvidia_checkpoint
from models.stylegan2 import load_generator


@pytest.fixture(autouse=True)
def _nvidia_names(monkeypatch):
    fake_nvidia_modules(monkeypatch)


def write_snapshot(tmp_path, net, name="network-snapshot-000000.pkl", protocol=4, **gen_kw):
    path = tmp_path / name
    write_pickle(snapshot(generator_module(net, **gen_kw), net["res"]), path, protocol=protocol)
    return path


def close(a, b, rel=1e-5):
    """|a - b| <= rel * max(1, max|b|): the scale of these random networks' outputs varies."""
    return (a - b).abs().max().item() <= rel * max(1.0, b.abs().max().item())


def test_snapshot_maps_onto_rosinality_keys(tmp_path):
    net = make_net(res=16, map_layers=2, conv_clamp=256, num_fp16_res=2)
    gen = load_generator(write_snapshot(tmp_path, net))
    sd, b = gen.state_dict(), net["blocks"]
    assert (gen.resolution, gen.n_mlp, gen.w_dim, gen.num_ws, gen.conv_clamp) == (16, 2, 16, 6, 256.0)
    assert torch.equal(sd["style.2.weight"], net["mapping"][1]["weight"])
    assert torch.equal(sd["input.input"][0], b[4]["const"])
    assert torch.equal(sd["conv1.conv.weight"][0], b[4]["conv1"]["weight"])
    assert torch.equal(sd["conv1.conv.modulation.bias"], b[4]["conv1"]["affine"]["bias"])
    assert torch.equal(sd["to_rgb1.bias"].flatten(), b[4]["torgb"]["bias"])
    assert torch.equal(sd["convs.2.conv.weight"][0], b[16]["conv0"]["weight"])  # b16.conv0 = 3rd conv after b4
    assert torch.equal(sd["convs.3.activate.bias"], b[16]["conv1"]["bias"])
    assert torch.equal(sd["convs.1.noise.weight"][0], b[8]["conv1"]["noise_strength"])
    assert torch.equal(sd["to_rgbs.1.conv.modulation.weight"], b[16]["torgb"]["affine"]["weight"])
    assert torch.equal(sd["noises.noise_3"][0, 0], b[16]["conv0"]["noise_const"])
    assert torch.equal(gen.mean_w, net["w_avg"])


CONFIGS = {
    "8px map1 unclamped": dict(res=8, map_layers=1),
    "16px map2 clamp active, fp16 channels-last blocks": dict(res=16, map_layers=2, conv_clamp=1.5, num_fp16_res=2),
    "32px map8 clamp256 lr0.1": dict(res=32, map_layers=8, conv_clamp=256, num_fp16_res=4, lr=0.1, channel_base=256),
    "16px without noise inputs": dict(res=16, map_layers=2, use_noise=False),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("protocol", [3, 4])
def test_outputs_match_nvidia_equations(tmp_path, name, protocol):
    net = make_net(**CONFIGS[name], seed=3)
    path = write_snapshot(tmp_path, net, protocol=protocol, channels_last_fp16=True)
    gen = load_generator(path)
    z = torch.randn(3, net["w_dim"], generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert close(gen.mapping(z), nv_mapping(net, z))
        w = gen.truncate(gen.mapping(z), 0.7)
        assert close(w, nv_mapping(net, z, psi=0.7))
        styles = gen.styles(w)
        assert all(close(s, ref) for s, ref in zip(styles, nv_styles(net, w), strict=True))
        img = gen.synthesize(styles, noise_mode="const")
        ref = nv_forward(net, z, psi=0.7)
        assert img.shape == ref.shape == (3, 3, net["res"], net["res"])
        assert close(img, ref)
        if net["conv_clamp"] == 1.5:  # the clamp is doing something here, and we reproduce it
            unclamped = nv_forward({**net, "conv_clamp": None}, z, psi=0.7)
            assert (unclamped - ref).abs().max() > 0.5
        assert close(gen.synthesize(styles, noise_mode="none"), nv_forward(net, z, psi=0.7, noise_mode="none"))


def test_convert_writes_a_rosinality_checkpoint_that_reproduces_it(tmp_path, capsys):
    net = make_net(res=16, map_layers=2, conv_clamp=1.5, num_fp16_res=2)
    src, dst = write_snapshot(tmp_path, net), tmp_path / "out" / "ffhq.pt"
    convert_main([str(src), str(dst), "--json"])
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "rosinality" and report["conv_clamp"] == 1.5 and report["n_mlp"] == 2
    assert report["snapshot"]["fp16_resolutions"] == [8, 16]
    assert report["snapshot"]["keys"] == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    ckpt = torch.load(dst, weights_only=True)
    assert set(ckpt) == {"g_ema", "latent_avg", "conv_clamp"} and "style.1.weight" in ckpt["g_ema"]
    a, b = load_generator(src), load_generator(dst)
    assert a.fingerprint() == b.fingerprint() == report["fingerprint"]
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a(z, psi=0.7), b(z, psi=0.7))
        assert close(b(z, psi=0.7), nv_forward(net, z, psi=0.7))


def test_convert_refuses_a_pkl_output(tmp_path):
    src = write_snapshot(tmp_path, make_net(res=8, map_layers=1))
    with pytest.raises(CheckpointError, match=r"\.pt"):
        convert(src, tmp_path / "again.pkl")


class RunsACommand:
    """What an attacker pickles: unpickling calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_a_command_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    net = make_net(res=8, map_layers=1)
    snap = snapshot(generator_module(net), 8)
    snap["augment_pipe"] = RunsACommand(marker)  # hidden next to a perfectly good G_ema
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump(snap, f)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    msg = str(err.value)
    assert "\n" not in msg and "system" in msg and "refusing" in msg and str(path) in msg
    with pytest.raises(SystemExit) as exit_:
        convert_main([str(path), str(tmp_path / "out.pt")])
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("error:") and "Traceback" not in stderr
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("payload", ["eval", "exec"])
def test_builtins_code_runners_are_refused(tmp_path, payload):
    marker = tmp_path / "ran"

    class Code:
        def __reduce__(self):
            return (eval if payload == "eval" else exec, (f"open({str(marker)!r}, 'w').close()",))

    path = tmp_path / "code.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Code()}))
    with pytest.raises(CheckpointError, match=f"builtins.{payload}"):
        load_generator(path)
    assert not marker.exists()


def test_module_source_stored_in_the_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "source-ran"
    net = make_net(res=8, map_layers=1)
    G = generator_module(net)
    # NVIDIA's loader execs module_src to rebuild each class; ours keeps it as text only
    G.module_src = f"open({str(marker)!r}, 'w').write('ran')\n"
    path = tmp_path / "src.pkl"
    write_pickle(snapshot(G, 8), path)
    gen = load_generator(path)
    assert gen.resolution == 8 and not marker.exists()


def test_stylegan3_pickle_is_refused_by_name(tmp_path):
    layer = module("SynthesisLayer", params=dict(weight=torch.zeros(4, 4, 3, 3)), use_fir=True)
    synthesis = module(
        "SynthesisNetwork",
        children=dict(input=module("SynthesisInput", buffers=dict(freqs=torch.zeros(4, 2))), L0_36_512=layer),
        layer_names=["L0_36_512"],
        img_resolution=16,
    )
    mapping = module("MappingNetwork", children=dict(fc0=module("FullyConnectedLayer")), z_dim=8, c_dim=0)
    G = module(
        "Generator",
        children=dict(synthesis=synthesis, mapping=mapping),
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=3,
    )
    path = tmp_path / "stylegan3-t-afhqv2-512x512.pkl"
    write_pickle(snapshot(G, 16), path)
    with pytest.raises(CheckpointError, match="StyleGAN3") as err:
        load_generator(path)
    assert "\n" not in str(err.value)


def test_conditional_generator_is_refused(tmp_path):
    path = write_snapshot(tmp_path, make_net(res=8, map_layers=2), c_dim=10)
    with pytest.raises(CheckpointError, match=r"conditional generators \(c_dim=10\) are not supported"):
        load_generator(path)


def test_resnet_synthesis_is_refused(tmp_path):
    path = write_snapshot(tmp_path, make_net(res=8, map_layers=2), architecture="resnet")
    with pytest.raises(CheckpointError, match="'resnet' architecture"):
        load_generator(path)


def test_other_files_get_one_line_errors(tmp_path):
    good = write_snapshot(tmp_path, make_net(res=8, map_layers=1)).read_bytes()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable network pickle"):
        load_generator(truncated)
    tf = tmp_path / "stylegan2-ffhq-config-f.pkl"  # the TensorFlow release: a tuple of three tflib Networks
    tf.write_bytes(b"\x80\x03" + b"cdnnlib.tflib.network\nNetwork\n)\x81}b" * 3 + b"\x87.")  # (G, D, Gs)
    with pytest.raises(CheckpointError, match="TensorFlow"):
        load_generator(tf)
    no_g = tmp_path / "d_only.pkl"
    write_pickle(dict(D=Persistent("Discriminator", {}), training_set_kwargs={}), no_g)
    with pytest.raises(CheckpointError, match="has no generator"):
        load_generator(no_g)


def test_read_reports_what_the_snapshot_held(tmp_path):
    net = make_net(res=16, map_layers=2, conv_clamp=256, num_fp16_res=1, lr=0.1)
    path = write_snapshot(tmp_path, net)
    ckpt, info = read_nvidia_checkpoint(path)
    assert set(ckpt) == {"g_ema", "latent_avg", "conv_clamp"}  # a rosinality checkpoint dict, read by load_generator
    gen = load_generator(path)
    assert (info.resolution, info.mapping_layers, info.conv_clamp, info.fp16_resolutions) == (16, 2, 256.0, [16])
    assert info.mapping_lr == pytest.approx(0.1) and info.has_w_avg and info.noise_layers == 5
    assert gen.lr_mlp == 0.01  # the 0.1 multiplier is folded into the stored weights


def test_convert_is_reachable_with_python_m():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "models.convert", "--help"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "Usage:" in out.stdout and "rosinality" in out.stdout, out.stderr


class StorageThatRunsACommand:
    """A 'tensor storage' whose torch.save bytes (legacy format, as torch pickles storages) hide os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import io

        buf = io.BytesIO()
        torch.save(RunsACommand(self.marker), buf, _use_new_zipfile_serialization=False)
        return (torch.storage._load_from_bytes, (buf.getvalue(),))


def test_code_hidden_in_storage_bytes_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned-by-storage"
    path = tmp_path / "storage.pkl"
    path.write_bytes(pickle.dumps({"G_ema": StorageThatRunsACommand(marker)}))
    with pytest.raises(CheckpointError, match="other than tensor data") as err:
        load_generator(path)
    assert "\n" not in str(err.value) and not marker.exists()


def test_an_int_and_a_float_clamp_are_one_generator(tmp_path):
    # an ADA pickle stores conv_clamp 256 as an int; a checkpoint written elsewhere may say 256.0
    net = make_net(res=16, map_layers=2, conv_clamp=256, num_fp16_res=1)
    ckpt, _ = read_nvidia_checkpoint(write_snapshot(tmp_path, net))
    fingerprints = []
    for clamp in (256, 256.0):
        path = tmp_path / f"clamp_{clamp!r}.pt"
        torch.save({**ckpt, "conv_clamp": clamp}, path)
        gen = load_generator(path)
        assert gen.conv_clamp == 256.0 and isinstance(gen.conv_clamp, float)
        fingerprints.append(gen.fingerprint())
    assert fingerprints[0] == fingerprints[1]
    torch.save({**ckpt, "conv_clamp": 1.5}, tmp_path / "other.pt")
    assert load_generator(tmp_path / "other.pt").fingerprint() != fingerprints[0]
