"""Parity of StyleAtlas's NVIDIA-pickle loader with NVIDIA's own code (run outside the test suite).

Needs a checkout of NVlabs/stylegan2-ada-pytorch or NVlabs/stylegan3 (not shipped here; their code is imported
from --nvidia-repo at run time, plus `scipy` and `requests` which their modules import). For each
configuration it builds a Generator/Discriminator/AugmentPipe with their classes, perturbs every parameter
(a trained-looking snapshot), writes a snapshot pickle laid out like their training_loop.py, loads it back
with their legacy.load_network_pkl and with models.stylegan2.load_generator, and prints the largest absolute
differences of w (truncation psi 0.7), of every style-layer output, and of the images (noise_mode="const",
force_fp32, and NVIDIA's default precision). Pickles passed with --pkl are compared as they are.

    python benchmarks/nvidia_parity.py --nvidia-repo ~/src/stylegan2-ada-pytorch [--pkl a.pkl ...]
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (name, resolution, mapping layers, conv_clamp, num_fp16_res, channel_base, channel_max, z=w dim, mapping lr)
CONFIGS = [
    ("8px map1 noclamp fp32", 8, 1, None, 0, 1024, 64, 64, 0.01),
    ("32px map2 clamp256 fp16x4 (ADA auto)", 32, 2, 256, 4, 2048, 64, 64, 0.01),
    ("64px map8 clamp256 fp16x4", 64, 8, 256, 4, 4096, 128, 128, 0.01),
    ("32px map2 clamp0.5 (clamp active)", 32, 2, 0.5, 2, 2048, 64, 64, 0.01),
    ("16px map4 lr0.1 noclamp", 16, 4, None, 0, 1024, 64, 64, 0.1),
]
LARGE = [  # the published architectures (slow on a CPU: minutes)
    ("256px paper256 map8 clamp256 fp16x4", 256, 8, 256, 4, 16384, 512, 512, 0.01),
    ("1024px config-f map8 clamp256 fp16x4", 1024, 8, 256, 4, 32768, 512, 512, 0.01),
]


def build_snapshot(nv_module: str, res, map_layers, clamp, fp16, cbase, cmax, dim, lr, seed=0, c_dim=0):
    """A snapshot dict made with NVIDIA's classes, every parameter moved away from its initial value."""
    import dnnlib

    torch.manual_seed(seed)
    common = dict(c_dim=c_dim, img_resolution=res, img_channels=3)
    mapping = dnnlib.EasyDict(num_layers=map_layers, lr_multiplier=lr)
    synth = dnnlib.EasyDict(channel_base=cbase, channel_max=cmax, num_fp16_res=fp16, conv_clamp=clamp)
    if nv_module == "training.networks":  # stylegan2-ada-pytorch
        G_kwargs = dnnlib.EasyDict(
            class_name="training.networks.Generator",
            z_dim=dim,
            w_dim=dim,
            mapping_kwargs=mapping,
            synthesis_kwargs=synth,
        )
    else:  # stylegan3's StyleGAN2 config
        G_kwargs = dnnlib.EasyDict(
            class_name="training.networks_stylegan2.Generator", z_dim=dim, w_dim=dim, mapping_kwargs=mapping, **synth
        )
    D_kwargs = dnnlib.EasyDict(
        class_name=nv_module.replace("Generator", "") + ".Discriminator",
        channel_base=cbase,
        channel_max=cmax,
        num_fp16_res=fp16,
        conv_clamp=clamp,
        block_kwargs={},
        mapping_kwargs={},
        epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4),
    )
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False)
    with torch.no_grad():
        for name, p in list(G.named_parameters()) + list(G.named_buffers()):
            if name.endswith("resample_filter"):
                continue
            if name.endswith(("noise_strength", ".bias")):
                p.add_(0.3 * torch.randn_like(p))
            elif name.endswith("w_avg"):
                p.copy_(torch.randn_like(p))
            elif name.endswith("const"):
                p.mul_(4.0)
            else:
                p.mul_(1 + 0.1 * torch.randn_like(p))
    snapshot = dict(
        training_set_kwargs=dict(
            class_name="training.dataset.ImageFolderDataset",
            path="x.zip",
            use_labels=c_dim > 0,
            max_size=100,
            xflip=False,
            resolution=res,
        )
    )
    pipe = dnnlib.util.construct_class_by_name(
        class_name="training.augment.AugmentPipe",
        xflip=1,
        rotate90=1,
        xint=1,
        scale=1,
        rotate=1,
        brightness=1,
        contrast=1,
    )
    for key, module in (("G", G), ("D", D), ("G_ema", copy.deepcopy(G)), ("augment_pipe", pipe)):
        snapshot[key] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    return snapshot


@torch.no_grad()
def compare(path: Path, legacy, batch: int = 4) -> dict:
    """Largest |ours - NVIDIA| for w, styles and images on `batch` seeded z."""
    from models.stylegan2 import load_generator

    with open(path, "rb") as f:
        G = legacy.load_network_pkl(f)["G_ema"].eval()
    ours = load_generator(path)
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(1))
    ws_nv = G.mapping(z, None, truncation_psi=0.7)  # [4, num_ws, w_dim]
    w_ours = ours.truncate(ours.mapping(z), 0.7)
    styles_nv = []
    for r in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{r}")
        names = ["conv1", "torgb"] if r == 4 else ["conv0", "conv1", "torgb"]
        styles_nv += [getattr(block, n).affine(ws_nv[:, 0]) for n in names]
    styles_ours = ours.styles(w_ours)
    img_ours = ours.synthesize(styles_ours, noise_mode="const")
    img_nv32 = G.synthesis(ws_nv, noise_mode="const", force_fp32=True)
    try:
        if G.img_resolution >= 256:  # CPU half-precision convolutions at these sizes take far too long
            raise RuntimeError("skipped at >= 256 px")
        img_nv = G.synthesis(ws_nv, noise_mode="const")  # fp16 blocks where the snapshot has them (CPU half)
        fp16_diff = (img_ours - img_nv.float()).abs().max().item()
        fp16_self = (img_nv32 - img_nv.float()).abs().max().item()
    except RuntimeError as exc:  # some CPU builds lack half convolutions
        fp16_diff = fp16_self = "skipped" if "skipped" in str(exc) else "n/a"
    clamp = ours.conv_clamp
    ours.conv_clamp = None
    for m in ours.modules():
        if hasattr(m, "conv_clamp"):
            m.conv_clamp = None
    unclamped = (ours.synthesize(styles_ours, noise_mode="const") - img_nv32).abs().max().item()
    return dict(
        w=(w_ours - ws_nv[:, 0]).abs().max().item(),
        styles=max((a - b).abs().max().item() for a, b in zip(styles_ours, styles_nv)),
        image_fp32=(img_ours - img_nv32).abs().max().item(),
        image_default=fp16_diff,
        nv_default_vs_fp32=fp16_self,
        image_range=img_nv32.abs().max().item(),
        clamp=clamp,
        without_clamp=unclamped,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvidia-repo", type=Path, required=True, help="checkout of stylegan2-ada-pytorch or stylegan3")
    ap.add_argument("--pkl", type=Path, nargs="*", default=[], help="extra snapshot pickles to compare")
    ap.add_argument("--large", action="store_true", help="also the 256 px and 1024 px published architectures")
    args = ap.parse_args()
    sys.path.insert(0, str(args.nvidia_repo.resolve()))
    import legacy  # NVIDIA's loader (runs the code stored in the pickle: only for this check)

    nv_module = (
        "training.networks"
        if (args.nvidia_repo / "training" / "networks.py").exists()
        else "training.networks_stylegan2"
    )
    from models.stylegan2 import load_generator

    torch.set_num_threads(1)
    print(f"load: {os.getloadavg()[0]:.2f}  NVIDIA code: {args.nvidia_repo} ({nv_module})")
    print(
        f"{'configuration':40s} {'w':>9s} {'styles':>9s} {'img fp32':>9s} {'img dflt':>9s} {'|img|':>6s} "
        f"{'no clamp':>9s} {'NV dflt-32':>10s}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, *cfg in CONFIGS + (LARGE if args.large else []):
            path = Path(tmp) / f"{name.split()[0]}.pkl"
            with open(path, "wb") as f:
                pickle.dump(build_snapshot(nv_module, *cfg), f)
            start = time.perf_counter()
            load_generator(path)
            load_s = time.perf_counter() - start
            print(f"  {name}: snapshot {path.stat().st_size / 2**20:.1f} MiB, our load {load_s:.2f} s", flush=True)
            rows.append((name, compare(path, legacy, batch=1 if cfg[0] >= 256 else 4)))
        rows += [(p.name, compare(p, legacy)) for p in args.pkl]

    def num(x, width=9):
        return f"{x:{width}.2e}" if isinstance(x, float) else f"{x:>{width}s}"

    for name, r in rows:
        print(
            f"{name:40s} {num(r['w'])} {num(r['styles'])} {num(r['image_fp32'])} {num(r['image_default'])} "
            f"{r['image_range']:6.2f} {num(r['without_clamp'])} {num(r['nv_default_vs_fp32'], 10)}"
        )
    print(
        "columns: max |ours - NVIDIA| of w (psi 0.7), styles, images (const noise) vs NVIDIA force_fp32 and vs "
        "NVIDIA's default precision (fp16 blocks); |img| = image range; 'no clamp' = ours with conv_clamp "
        "removed; 'NV dflt-32' = NVIDIA's own default-precision vs fp32 difference"
    )


if __name__ == "__main__":
    main()
