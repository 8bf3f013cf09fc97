"""CUDA against the CPU: the same models, builds, edits and fallbacks on a GPU give what the CPU gives.

Skipped where PyTorch sees no CUDA GPU (CI). STYLEATLAS_TEST_DEVICE=cpu runs every test with the CPU in the GPU's
place (both sides agree exactly then): a dry run of these paths on a machine without one.

PyTorch's defaults are kept (cuDNN convolutions in TF32 on Ampere and later, matrix products in full fp32), as a
user's `--device cuda` gets them, so images agree to TF32 rounding, not bit for bit. Each test prints what it
measured (`pytest -s`): the numbers in the closing notes come from there.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import ROOT, SHAPES_WORLD, build_args, torchrun, write_model_files

DEVICE = os.environ.get("STYLEATLAS_TEST_DEVICE", "cuda")
pytestmark = [
    *SHAPES_WORLD,
    pytest.mark.skipif(
        DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA GPU is visible to PyTorch"
    ),
]
BUILD = dict(num_images=4, num_samples=2000, layers=(5, 6, 8, 9), vocabulary="demo", progress=False)


def report(what: str, **numbers) -> None:
    print(f"\n[{DEVICE} vs cpu] {what}: " + ", ".join(f"{k} {v:.3g}" for k, v in numbers.items()), flush=True)


def max_abs(a, b) -> float:
    return float((torch.as_tensor(a).float().cpu() - torch.as_tensor(b).float().cpu()).abs().max())


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def top_overlap(a, b, prompt: str, k: int = 10) -> int:
    """How many of the k channels with the largest |score| for `prompt` two atlases share (beta plays no part)."""
    top = [set(np.argsort(-np.abs(x.direction(prompt).scores), kind="stable")[:k].tolist()) for x in (a, b)]
    return len(top[0] & top[1])


@pytest.fixture(scope="module")
def demo():
    """{device: (generator, clip, identity)} for the CPU and DEVICE, the shipped shapes-world models."""
    from models.clip import load_clip
    from models.identity import load_identity
    from models.stylegan2 import load_generator

    return {
        d: (load_generator("demo", d), load_clip("demo", device=d), load_identity("demo", d)) for d in ("cpu", DEVICE)
    }


@pytest.fixture(scope="module")
def builds(demo, tmp_path_factory):
    """Demo atlases built on the CPU and on DEVICE (fp32, bf16, fp16, and the jacobian method), with build seconds."""
    from pipeline import build_atlas

    root, out, seconds = tmp_path_factory.mktemp("cuda_builds"), {}, {}
    plans = {
        "cpu": ("cpu", {}),
        "fp32": (DEVICE, {}),
        "bf16": (DEVICE, dict(precision="bf16")),
        "fp16": (DEVICE, dict(precision="fp16")),
        "jacobian": (DEVICE, dict(relevance_method="jacobian")),
        "jacobian-cpu": ("cpu", dict(relevance_method="jacobian")),
    }
    for name, (device, options) in plans.items():
        gen, clip, _ = demo[device]
        start = time.perf_counter()
        out[name] = build_atlas(gen, clip, root / name, device=device, **BUILD, **options)
        seconds[name] = time.perf_counter() - start
    report("build seconds (4 images per channel, 192 channels of layers 5-9, demo vocabulary)", **seconds)
    return out


def open_atlas(path, models=None):
    from query import Atlas

    gen, clip, _ = models or (None, None, None)
    return Atlas.open(path, generator=gen, embedder=clip)


def test_generators_on_the_device_draw_what_the_cpu_draws(demo):
    from models.stylegan2 import small_generator

    torch.manual_seed(0)
    config_f = small_generator(seed=0, resolution=64, style_dim=64, width=32)  # 64 px, every layer kind
    for name, gen_cpu, gen_dev in (("demo", demo["cpu"][0], demo[DEVICE][0]), ("64px", config_f, None)):
        gen_dev = gen_dev or small_generator(seed=0, resolution=64, style_dim=64, width=32).to(DEVICE)
        z = torch.randn(8, gen_cpu.z_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            w_cpu, w_dev = gen_cpu.mapping(z), gen_dev.mapping(z.to(DEVICE))
            s_cpu, s_dev = gen_cpu.styles(w_cpu), gen_dev.styles(w_dev)
            x_cpu = gen_cpu.synthesize(s_cpu, noise_mode="const")
            x_dev = gen_dev.synthesize(s_dev, noise_mode="const")
        assert x_dev.device.type == torch.device(DEVICE).type
        style_err = max(max_abs(a, b) / float(a.abs().max()) for a, b in zip(s_cpu, s_dev))
        report(f"{name} generator", w=max_abs(w_cpu, w_dev), styles_rel=style_err, image=max_abs(x_cpu, x_dev))
        assert max_abs(w_cpu, w_dev) < 1e-3 * float(w_cpu.abs().max())
        assert style_err < 1e-2
        assert max_abs(x_cpu, x_dev) < 0.05 and float((x_cpu - x_dev.cpu()).abs().mean()) < 5e-3


def test_clip_and_identity_on_the_device_embed_as_on_the_cpu(demo):
    from models.identity import ArcFaceIdentity
    from models.irse import IRSEBackbone

    gen, clip_cpu, id_cpu = demo["cpu"]
    _, clip_dev, id_dev = demo[DEVICE]
    with torch.no_grad():
        images = gen.synthesize(gen.styles(gen.mapping(torch.randn(6, gen.z_dim))), noise_mode="const")
        texts = ["red", "a photo of a large blue circle.", "light background"]
        pairs = {
            "clip image": (clip_cpu.encode_image(images), clip_dev.encode_image(images.to(DEVICE))),
            "clip text": (clip_cpu.encode_text(texts), clip_dev.encode_text(texts)),
            "demo identity": (id_cpu.encode(images), id_dev.encode(images.to(DEVICE))),
        }
        torch.manual_seed(0)
        arcface = ArcFaceIdentity(IRSEBackbone(50))
        faces = torch.rand(2, 3, 256, 256) * 2 - 1
        ref = arcface.encode(faces)
        pairs["arcface ir-se50"] = (ref, arcface.to(DEVICE).encode(faces.to(DEVICE)))
    cosines = {k: float((a * b.cpu()).sum(1).min()) for k, (a, b) in pairs.items()}
    report("embeddings, least cosine", **cosines)
    assert min(cosines.values()) > 0.999


def test_builds_on_the_device_match_the_cpu_build(builds):
    cpu, dev = open_atlas(builds["cpu"]), open_atlas(builds["fp32"])
    assert cpu.channels == dev.channels
    cos = row_cosines(cpu.relevance, dev.relevance)
    std = float(np.abs(dev.style_std / cpu.style_std - 1).max())
    overlaps = {p: top_overlap(cpu, dev, p) for p in ("red", "circle", "large", "light background")}
    report("fp32 build", relevance_cos_min=cos.min(), relevance_cos_p5=np.percentile(cos, 5), style_std_rel=std)
    report("fp32 build, top-10 channels shared of 10", **overlaps)
    assert std < 1e-3 and np.percentile(cos, 5) > 0.99 and cos.min() > 0.9
    assert min(overlaps.values()) >= 8


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_builds_agree_with_fp32(builds, precision):
    fp32, low = open_atlas(builds["fp32"]), open_atlas(builds[precision])
    cos = row_cosines(fp32.relevance, low.relevance)
    overlaps = {p: top_overlap(fp32, low, p) for p in ("red", "circle", "large", "light background")}
    report(f"{precision} build vs fp32", relevance_cos_median=np.median(cos), relevance_cos_p5=np.percentile(cos, 5))
    report(f"{precision} build, top-10 channels shared with fp32", **overlaps)
    assert np.isfinite(low.relevance).all()
    assert np.median(cos) > 0.95 and min(overlaps.values()) >= 6


def test_jacobian_build_on_the_device_matches_the_cpu(builds):
    dev, cpu, exact = (open_atlas(builds[k]) for k in ("jacobian", "jacobian-cpu", "fp32"))
    cos = row_cosines(cpu.relevance, dev.relevance)
    vs_exact = row_cosines(exact.relevance, dev.relevance)
    report("jacobian build", cpu_cos_p5=np.percentile(cos, 5), exact_cos_median=np.median(vs_exact))
    assert np.percentile(cos, 5) > 0.99 and top_overlap(cpu, dev, "red") >= 8


def test_edits_on_the_device_match_the_cpu(demo, builds):
    cpu, dev = open_atlas(builds["cpu"], demo["cpu"]), open_atlas(builds["cpu"], demo[DEVICE])
    ws_cpu = cpu.sample_ws(range(6))
    ws_dev = dev.sample_ws(range(6))
    d = cpu.direction("red", beta="auto")
    with torch.no_grad():
        a, b = cpu.edit(ws_cpu, d, 4.0), dev.edit(ws_dev, d, 4.0)
        g_cpu = cpu.edit_text(ws_cpu, "red", method="global")
        g_dev = dev.edit_text(ws_dev, "red", method="global")
    report(
        "global edit 'red' alpha 4",
        ws=max_abs(ws_cpu, ws_dev),
        image=max_abs(a, b),
        edit_text=max_abs(g_cpu.images, g_dev.images),
    )
    assert b.device.type == torch.device(DEVICE).type and g_dev.method == "global"
    assert max_abs(ws_cpu, ws_dev) < 1e-3 and max_abs(a, b) < 0.05 and max_abs(g_cpu.images, g_dev.images) < 0.05


def test_fallbacks_run_on_the_device_as_on_the_cpu(demo):
    from query import invert, optimize, train_mapper

    out = {}
    for device in ("cpu", DEVICE):
        gen, clip, ident = demo[device]
        ws = gen.truncate(
            gen.mapping(torch.randn(2, gen.z_dim, generator=torch.Generator().manual_seed(3)).to(device)), 0.7
        )
        with torch.no_grad():
            target = gen.synthesize(gen.styles(ws), noise_mode="const")
        start = time.perf_counter()
        edited = optimize(gen, clip, ws, "red", steps=10, identity=ident, progress=False)
        t_opt = time.perf_counter() - start
        start = time.perf_counter()
        inverted = invert(gen, target, steps=10, progress=False)
        t_inv = time.perf_counter() - start
        start = time.perf_counter()
        mapper = train_mapper(gen, clip, "red", steps=10, batch_size=4, identity=ident, progress=False)
        t_map = time.perf_counter() - start
        with torch.no_grad():
            mapped = mapper(ws.unsqueeze(1).repeat(1, gen.num_ws, 1))
            redness = (
                clip.encode_image(gen.synthesize(gen.styles(edited), noise_mode="const")) @ clip.encode_text(["red"]).T
            )
        out[device] = dict(edited=edited, inverted=inverted, mapped=mapped, redness=redness)
        report(f"fallback seconds on {device}", optimize_10=t_opt, invert_10=t_inv, mapper_10=t_map)
        assert edited.device.type == inverted.device.type == mapped.device.type == torch.device(device).type
        assert all(torch.isfinite(v).all() for v in out[device].values())
    a, b = out["cpu"], out[DEVICE]
    report(
        "fallbacks after 10 steps",
        optimize_ws=max_abs(a["edited"], b["edited"]),
        invert_ws=max_abs(a["inverted"], b["inverted"]),
        mapper_ws=max_abs(a["mapped"], b["mapped"]),
        redness=max_abs(a["redness"], b["redness"]),
    )
    # ten Adam steps from the same seeds: the trajectories stay together to well within one step's size
    assert max_abs(a["edited"], b["edited"]) < 0.1 and max_abs(a["inverted"], b["inverted"]) < 0.1
    assert max_abs(a["mapped"], b["mapped"]) < 0.1 and max_abs(a["redness"], b["redness"]) < 0.01


def _run(cmd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def test_the_clis_build_with_torchrun_and_edit_on_the_device(tmp_path):
    from query import Atlas

    models = write_model_files(tmp_path / "models", "red\ngreen\nsmiling\nbig shape\n")
    small = dict(num_images=4, num_samples=600, batch_size=6)
    cpu_args = build_args(models, tmp_path / "cpu", **small)
    dev_args = [a if a != "cpu" else DEVICE for a in build_args(models, tmp_path / "dev", **small)]
    _run([sys.executable, "build_index.py", *cpu_args, "--json"])
    ranks = torchrun()
    if DEVICE.startswith("cuda") and ranks:  # one rank: nccl on the GPU (pipeline/distributed.py)
        report_json = json.loads(
            _run([ranks, "--standalone", "--nproc_per_node=1", "build_index.py", *dev_args, "--json"]).stdout
        )
        assert report_json["workers"] == 1
    else:
        report_json = json.loads(_run([sys.executable, "build_index.py", *dev_args, "--json"]).stdout)
    assert report_json["status"] == "complete"
    cpu, dev = Atlas.open(tmp_path / "cpu"), Atlas.open(tmp_path / "dev")
    cos = row_cosines(cpu.relevance, dev.relevance)
    report("CLI build (tiny random models)", relevance_cos_min=cos.min())
    assert np.percentile(cos, 5) > 0.99

    pngs = {}
    for device in ("cpu", DEVICE):
        png = tmp_path / f"edit-{device.replace(':', '')}.png"
        atlas = ["--atlas", tmp_path / "cpu", "--generator", models / "gen.pt"]
        _run([sys.executable, "query.py", "edit", "red", "--beta", "0.05", "--device", device, "-o", png, *atlas])
        from PIL import Image

        pngs[device] = np.asarray(Image.open(png).convert("RGB"), np.int16)
    diff = np.abs(pngs["cpu"] - pngs[DEVICE])
    report("query.py edit PNG", max_levels=float(diff.max()), mean_levels=float(diff.mean()))
    assert diff.max() <= 16 and diff.mean() < 1.0
