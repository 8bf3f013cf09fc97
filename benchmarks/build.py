"""Channel-relevance throughput of the build pipeline (SPEC §3), batched vs the reference's batch 1.

Two worlds: the shapes world (the demo generator and CLIP, when they are installed; otherwise a 32 px
random StyleGAN2 + tiny CLIP of the same size class stands in) and the FFHQ 1024 config-f architecture with
random weights and a random ViT-B-32 (the reference's CLIP architecture). For each, the same few channels
x M images are measured at batch 1 (the reference renders one perturbed image at a time) and at the
pipeline's batch size, in the same run; the projection is the full FFHQ build (6,048 conv channels x 100
images x 2 renders) on this machine at that rate.

    python benchmarks/build.py [--threads 2] [--batch 16] [--channels 8] [--images 8] [--skip-1024]
                               [--channels-1024 2] [--images-1024 2] [--batch-1024 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline import relevance as relevance_stage
from pipeline.config import RelevanceConfig

FFHQ_RENDERS = 6048 * 100 * 2


def measure(gen, embedder, channels, images, batch, device):
    """(seconds, renders) for the relevance of `channels` [c, 2] over `images` images at `batch`."""
    cfg = RelevanceConfig(num_images=images, batch_size=batch)
    s_img = relevance_stage.image_styles(gen, cfg)
    layer_mean = [s.double().mean(0).cpu().numpy() for s in s_img]
    layer_std = [s.double().std(0).cpu().numpy() + 1e-3 for s in s_img]
    relevance_stage.compute_chunk(
        gen,
        embedder,
        s_img,
        channels[:1],
        layer_mean,
        layer_std,
        RelevanceConfig(num_images=2, batch_size=min(batch, 4)),
    )  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    relevance_stage.compute_chunk(gen, embedder, s_img, channels, layer_mean, layer_std, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, 2 * images * len(channels)


def worlds(args, device):
    from models.clip import load_clip
    from models.stylegan2 import StyleGAN2Generator, load_generator, small_generator

    try:
        yield (
            "shapes world (demo models)",
            load_generator("demo", device=device),
            load_clip("demo", device=device),
            args.channels,
            args.images,
            args.batch,
        )
    except Exception as exc:  # noqa: BLE001 - the demo models are optional here
        print(f"# demo models not available ({str(exc)[:80]}); a 32 px random stand-in is measured instead")
        clip_cfg = dict(
            embed_dim=64,
            vision_cfg=dict(image_size=32, layers=4, width=128, patch_size=4),
            text_cfg=dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=4),
        )
        yield (
            "32 px stand-in (random)",
            small_generator(seed=0, resolution=32, style_dim=64, width=64).to(device),
            load_clip(clip_cfg, seed=0, device=device),
            args.channels,
            args.images,
            args.batch,
        )
    if not args.skip_1024:
        gen = StyleGAN2Generator(resolution=1024, seed=0).to(device).eval()
        gen.update_mean_w(n=1000, seed=0)
        yield (
            "FFHQ 1024 config-f (random) + ViT-B-32",
            gen,
            load_clip("ViT-B-32", device=device),
            args.channels_1024,
            args.images_1024,
            args.batch_1024,
        )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--channels", type=int, default=8, help="channels measured (spread over the layers)")
    p.add_argument("--images", type=int, default=8, help="M for the measurement")
    p.add_argument("--channels-1024", type=int, default=2)
    p.add_argument("--images-1024", type=int, default=2)
    p.add_argument("--batch-1024", type=int, default=4)
    p.add_argument("--skip-1024", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"# device {device}, torch threads {torch.get_num_threads()}")
    print(
        "| world | channels x M | batch | renders/s | channels/s | speed-up | projected FFHQ build (1.21 M renders) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, gen, embedder, num_channels, images, batch_size in worlds(args, device):
        layers = relevance_stage.layer_table(gen, RelevanceConfig())
        all_channels = relevance_stage.atlas_channels(layers)
        pick = np.linspace(0, len(all_channels) - 1, num_channels).round().astype(int)
        channels = all_channels[pick]
        base = None
        for batch in (1, batch_size):
            seconds, renders = measure(gen, embedder, channels, images, batch, device)
            rate = renders / seconds
            base = base or rate
            hours = FFHQ_RENDERS / rate / 3600
            print(
                f"| {name} | {len(channels)} x {images} | {batch} | {rate:.2f} | {len(channels) / seconds:.3f} | "
                f"{rate / base:.2f}x | {hours:,.1f} h |",
                flush=True,
            )


if __name__ == "__main__":
    main()
