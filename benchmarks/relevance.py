"""Relevance methods side by side (SPEC §3 exact vs §3b jacobian): agreement, the sampling floor, and cost.

Demo world (the shapes-world generator and CLIP, every channel): two whole builds in the same run, exact and
jacobian, on the same M images; then exact relevance on a disjoint image set (the sampling floor), prefix
reuse against plain renders, and for 50 vocabulary prompts the top-20 channel overlap and the Jaccard index
of the selected channel sets at beta 0.10 / 0.15 / 0.20 (fast vs exact next to floor vs exact).

256 px world (StyleGAN2 config-f widths, random weights + a random ViT-B-32; too slow on a CPU for every
channel): a sample of channels measured exactly, on a disjoint image set, with the early exit at
`--exit-256` px, and by their first-order columns J_k[:, c] (central differences at 0.01 sigma, checked
against `--vjp-chunks-256` batched VJP chunks of the jacobian path on the same images). The jacobian time per
image is the graph forward plus D / vjp_batch batched backward passes, `--vjp-chunks-256` of them timed.

    python benchmarks/relevance.py [--threads 1] [--images 16] [--prompts 50] [--skip-demo] [--skip-256]
                                   [--channels-256 6] [--images-256 2] [--vjp-batch-256 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline import jacobian, relevance
from pipeline.config import RelevanceConfig

BETAS = (0.10, 0.15, 0.20)


def load() -> str:
    return os.popen("uptime").read().strip()


def cos_table(a: np.ndarray, b: np.ndarray, layers: np.ndarray) -> dict:
    """Median / p10 row cosine overall and per layer."""
    c = jacobian.row_cosines(a, b)
    out = {"all": (float(np.median(c)), float(np.percentile(c, 10)), len(c))}
    for l in np.unique(layers):
        x = c[layers == l]
        out[int(l)] = (float(np.median(x)), float(np.percentile(x, 10)), len(x))
    return out


def prompt_agreement(rel_a: np.ndarray, rel_b: np.ndarray, delta_t: np.ndarray) -> dict:
    """Top-20 overlap and selected-set Jaccard (|score| >= beta) of two relevance matrices over prompts [P, D]."""
    sa, sb = delta_t @ rel_a.T, delta_t @ rel_b.T  # [P, C]
    top = [len(set(np.argsort(-np.abs(x))[:20]) & set(np.argsort(-np.abs(y))[:20])) / 20 for x, y in zip(sa, sb)]
    out = {"top20_overlap": float(np.mean(top))}
    for beta in BETAS:
        jac = []
        for x, y in zip(sa, sb):
            u, v = np.abs(x) >= beta, np.abs(y) >= beta
            if u.any() or v.any():
                jac.append((u & v).sum() / (u | v).sum())
        out[f"jaccard_{beta:.2f}"] = float(np.mean(jac)) if jac else float("nan")
        out[f"prompts_{beta:.2f}"] = len(jac)
    return out


def demo_world(args) -> dict:
    import index
    from models.clip import load_clip
    from models.stylegan2 import load_generator
    from pipeline import run_build

    gen, clip = load_generator("demo"), load_clip("demo")
    kw = dict(num_images=args.images, num_samples=args.samples, vocabulary="demo", progress=False, device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="relbench-"))
    res = {"uptime_start": load()}
    builds = {}
    for method in ("exact", "jacobian"):
        t0 = time.perf_counter()
        report = run_build(gen, clip, tmp / method, relevance_method=method, **kw)
        builds[method] = dict(
            total=time.perf_counter() - t0, relevance=report.seconds["relevance"], work=report.images_rendered
        )
        print(f"# demo {method} build: {builds[method]}  ({load()})", flush=True)
    ex, fa = index.read_atlas(tmp / "exact"), index.read_atlas(tmp / "jacobian")
    res["builds"] = builds
    res["extra"] = fa.extra["relevance"]
    cfg = RelevanceConfig(num_images=args.images)
    channels = ex.channels
    t0 = time.perf_counter()
    floor_rows, _ = relevance.compute_chunk(
        gen, clip, jacobian.image_styles(gen, cfg, 1), channels, ex.layer_mean, ex.layer_std, cfg
    )
    res["floor_seconds"] = time.perf_counter() - t0
    res["cos_fast"] = cos_table(fa.relevance, ex.relevance, channels[:, 0])
    res["cos_floor"] = cos_table(floor_rows, ex.relevance, channels[:, 0])
    res["consistency_abs_diff_median"] = float(np.median(np.abs(fa.consistency - ex.consistency)))
    res["consistency_exact_median"] = float(np.median(ex.consistency))
    res["consistency_fast_median"] = float(np.median(fa.consistency))
    pick = np.linspace(0, len(ex.vocab) - 1, min(args.prompts, len(ex.vocab))).round().astype(int)
    delta_t = ex.vocab_embeddings[pick] - ex.neutral_embedding[None]
    delta_t /= np.linalg.norm(delta_t, axis=1, keepdims=True)
    res["prompts"] = dict(
        fast=prompt_agreement(fa.relevance, ex.relevance, delta_t),
        floor=prompt_agreement(floor_rows, ex.relevance, delta_t),
        count=len(pick),
    )
    # prefix reuse vs plain renders (the same rows up to float rounding; how much time it saves)
    sample = channels[:: max(1, len(channels) // 96)]
    s_img = relevance.image_styles(gen, cfg)
    times, rows = {}, {}
    for name, c in (("plain", dataclasses.replace(cfg, prefix_reuse=False)), ("prefix", cfg)):
        t0 = time.perf_counter()
        rows[name], _ = relevance.compute_chunk(gen, clip, s_img, sample, ex.layer_mean, ex.layer_std, c)
        times[name] = time.perf_counter() - t0
    res["prefix"] = dict(
        channels=len(sample),
        seconds=times,
        max_abs_diff=float(np.abs(rows["plain"] - rows["prefix"]).max()),
        min_cos=float(jacobian.row_cosines(rows["plain"], rows["prefix"]).min()),
    )
    res["channels"], res["dim"] = len(channels), int(clip.dim)
    res["uptime_end"] = load()
    return res


def world_256(args) -> dict:
    from models.clip import load_clip
    from models.stylegan2 import StyleGAN2Generator

    gen = StyleGAN2Generator(resolution=args.resolution_256, seed=0).eval()
    gen.update_mean_w(n=1000, seed=0)
    clip = load_clip(args.clip_256)
    res = {"uptime_start": load()}
    M = args.images_256
    cfg = RelevanceConfig(num_images=M, batch_size=4, vjp_batch=args.vjp_batch_256)
    layers = relevance.layer_table(gen, cfg)
    channels = relevance.atlas_channels(layers)
    C, D = len(channels), int(clip.dim)
    with torch.no_grad():  # style statistics from 2,000 samples (the cost plan does not depend on them)
        z = torch.randn(2000, gen.z_dim, generator=torch.Generator().manual_seed(5))
        ss = [torch.cat(x) for x in zip(*[gen.styles(gen.truncate(gen.mapping(zb), 0.7)) for zb in z.split(500)])]
    mean, std = [s.double().mean(0).numpy() for s in ss], [s.double().std(0).numpy() for s in ss]
    rows = np.linspace(0, C - 1, args.channels_256).round().astype(int)
    sample = channels[rows]
    s_img = relevance.image_styles(gen, cfg)
    timed = {}

    def exact_rows(name, styles, c):
        t0 = time.perf_counter()
        out = relevance.compute_chunk(gen, clip, styles, sample, mean, std, c)
        timed[name] = time.perf_counter() - t0
        print(f"# 256 px {name}: {timed[name]:.0f} s ({load()})", flush=True)
        return out

    exact, exact_c = exact_rows("exact", s_img, cfg)
    floor, _ = exact_rows("floor", jacobian.image_styles(gen, cfg, 1), cfg)
    exit_cfg = dataclasses.replace(cfg, clip_resolution_exit=args.exit_256)
    res_of = np.array([layers[l]["resolution"] for l in sample[:, 0]])
    early = res_of <= args.exit_256
    exit_rows = None
    if early.any():
        t0 = time.perf_counter()
        exit_rows, _ = relevance.compute_chunk(gen, clip, s_img, sample[early], mean, std, exit_cfg)
        timed["exit"] = time.perf_counter() - t0
        exit_plain_seconds = timed["exact"] * early.sum() / len(sample)  # same rows, full renders (estimate)
    # first-order columns J_k[:, c] of the sampled channels by central differences (float32, h = 0.01 sigma)
    t0 = time.perf_counter()
    cols = torch.zeros(M, len(sample), D, dtype=torch.float64)
    with torch.no_grad():
        for j, (l, c) in enumerate(sample):
            h = 0.01 * float(std[l][c])
            e = []
            for sign in (1, -1):
                st = [s.clone() for s in s_img]
                st[l][:, c] += sign * h
                e.append(F.normalize(clip.encode_image(gen.synthesize(st)).double(), dim=-1))
            cols[:, j] = (e[0] - e[1]) / (2 * h)
    timed["first_order_fd"] = time.perf_counter() - t0
    sigma = np.array([std[l][c] for l, c in sample])
    d_sum, d_sq = jacobian.direction_sums(cols.float(), sigma, cfg.alpha)
    fast, fast_c = jacobian.reduce_sums(d_sum, d_sq, M)
    # the jacobian path itself on image 0: graph forward + a few batched VJP chunks (timed; rows checked vs FD)
    B = args.vjp_batch_256
    with jacobian._Frozen(gen, clip), torch.enable_grad():
        leaves = [s[:1].clone().requires_grad_(True) for s in s_img]
        t0 = time.perf_counter()
        e = F.normalize(clip.encode_image(gen.synthesize(leaves)).float(), dim=-1)  # [1, D]
        t_forward = time.perf_counter() - t0
        eye, t_chunks, vjp_check = torch.eye(D), [], []
        for k in range(args.vjp_chunks_256):
            t0 = time.perf_counter()
            g = torch.autograd.grad(
                e, leaves, grad_outputs=eye[k * B : (k + 1) * B, None, :], is_grads_batched=True, retain_graph=True
            )
            t_chunks.append(time.perf_counter() - t0)
            part = torch.stack([g[l][:, 0, c] for l, c in sample], 1).double()  # [B, n] rows k*B.. of J_0
            ref = cols[0, :, k * B : (k + 1) * B].T  # [B, n]
            vjp_check.append(float(F.cosine_similarity(part.T, ref.T, dim=-1).min()))
            print(f"# 256 px VJP chunk {k}: {t_chunks[-1]:.0f} s ({load()})", flush=True)
    jac_per_image = t_forward + (D / B) * float(np.mean(t_chunks))
    exact_per_channel_image = timed["exact"] / (len(sample) * M)
    res.update(
        channels=C,
        sampled=len(sample),
        images=M,
        dim=D,
        seconds=timed,
        t_forward=t_forward,
        t_vjp_chunks=t_chunks,
        vjp_batch=B,
        vjp_rows_vs_fd_min_cos=min(vjp_check),
        jacobian_seconds_per_image=jac_per_image,
        jacobian_seconds_per_channel_image=jac_per_image / C,
        exact_seconds_per_channel_image=exact_per_channel_image,
        speedup_per_channel=exact_per_channel_image / (jac_per_image / C),
        cos_fast=cos_table(fast, exact, sample[:, 0]),
        cos_floor=cos_table(floor, exact, sample[:, 0]),
        consistency_abs_diff_median=float(np.median(np.abs(fast_c - exact_c))),
    )
    if exit_rows is not None:
        res["exit"] = dict(
            resolution=args.exit_256,
            channels=int(early.sum()),
            cos_vs_full=cos_table(exit_rows, exact[early], sample[early, 0]),
            seconds=timed["exit"],
            full_seconds_estimate=exit_plain_seconds,
        )
    res["uptime_end"] = load()
    return res


def print_demo(r: dict) -> None:
    b = r["builds"]
    print(
        f"\n## Demo world (shapes generator 32 px + demo CLIP, D = {r['dim']}), M = {r['m']}, {r['channels']} channels"
    )
    print(f"load: {r['uptime_start']}  ->  {r['uptime_end']}\n")
    print("| build | whole build s | relevance s | work | per channel |")
    print("|---|---|---|---|---|")
    print(
        f"| exact | {b['exact']['total']:.1f} | {b['exact']['relevance']:.1f} | {b['exact']['work']:,} renders | "
        f"{2 * r['m']} renders |"
    )
    print(
        f"| jacobian | {b['jacobian']['total']:.1f} | {b['jacobian']['relevance']:.1f} | {b['jacobian']['work']:,} "
        f"forward-eq. | {r['m'] * r['dim'] / r['channels']:.2f} VJPs |"
    )
    print(
        f"\nwhole build speed-up {b['exact']['total'] / b['jacobian']['total']:.1f}x, relevance stage "
        f"{b['exact']['relevance'] / b['jacobian']['relevance']:.1f}x\n"
    )
    _cos_rows(r)
    p = r["prompts"]
    print(f"\n{p['count']} prompts | top-20 overlap | " + " | ".join(f"Jaccard beta {x:.2f}" for x in BETAS) + " |")
    print("|---|---|" + "---|" * len(BETAS))
    for name in ("fast", "floor"):
        q = p[name]
        print(
            f"| {'jacobian vs exact' if name == 'fast' else 'exact, disjoint images (floor)'} | "
            f"{q['top20_overlap']:.3f} | "
            + " | ".join(f"{q[f'jaccard_{x:.2f}']:.3f} ({q[f'prompts_{x:.2f}']})" for x in BETAS)
            + " |"
        )
    pr = r["prefix"]
    print(
        f"\nprefix reuse on {pr['channels']} channels: plain {pr['seconds']['plain']:.1f} s, prefix "
        f"{pr['seconds']['prefix']:.1f} s ({pr['seconds']['plain'] / pr['seconds']['prefix']:.2f}x); max |diff| "
        f"{pr['max_abs_diff']:.1e}, min row cosine {pr['min_cos']:.6f}"
    )
    print(
        f"consistency: exact median {r['consistency_exact_median']:.3f}, jacobian {r['consistency_fast_median']:.3f}, "
        f"median |diff| {r['consistency_abs_diff_median']:.3f}; atlas extra: {json.dumps(r['extra'])[:300]}"
    )


def _cos_rows(r: dict) -> None:
    print("| layer | channels | jacobian vs exact median / p10 | floor (exact, disjoint images) median / p10 |")
    print("|---|---|---|---|")
    for key in r["cos_fast"]:
        f, g = r["cos_fast"][key], r["cos_floor"][key]
        print(f"| {key} | {f[2]} | {f[0]:.3f} / {f[1]:.3f} | {g[0]:.3f} / {g[1]:.3f} |")


def print_256(r: dict) -> None:
    print(
        f"\n## 256 px StyleGAN2 (config-f widths, random) + ViT-B-32 (random), D = {r['dim']}, {r['channels']} "
        f"channels; {r['sampled']} sampled, M = {r['images']}"
    )
    print(f"load: {r['uptime_start']}  ->  {r['uptime_end']}\n")
    print("| method | seconds per channel per image | how |")
    print("|---|---|---|")
    print(
        f"| exact | {r['exact_seconds_per_channel_image']:.2f} | {r['seconds']['exact']:.0f} s for "
        f"{r['sampled']} ch x {r['images']} img x 2 renders (prefix reuse on) |"
    )
    print(
        f"| jacobian | {r['jacobian_seconds_per_channel_image']:.3f} | ({r['t_forward']:.0f} s graph forward + "
        f"{r['dim']}/{r['vjp_batch']} x {np.mean(r['t_vjp_chunks']):.0f} s per VJP chunk) / {r['channels']} channels |"
    )
    print(
        f"\nrelevance time per channel: {r['speedup_per_channel']:.1f}x lower with jacobian; VJP rows vs central "
        f"differences: min cosine {r['vjp_rows_vs_fd_min_cos']:.4f}\n"
    )
    _cos_rows(r)
    print(f"consistency median |diff| {r['consistency_abs_diff_median']:.3f}")
    if "exit" in r:
        e = r["exit"]
        c = e["cos_vs_full"]["all"]
        print(
            f"early exit at {e['resolution']} px ({e['channels']} channels at <= {e['resolution']} px): row cosine "
            f"vs full renders median {c[0]:.3f} / p10 {c[1]:.3f}; "
            f"{e['seconds']:.0f} s vs ~{e['full_seconds_estimate']:.0f} s"
        )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--images", type=int, default=16, help="M in the demo world")
    p.add_argument("--samples", type=int, default=10_000, help="style-statistics samples of the demo builds")
    p.add_argument("--prompts", type=int, default=50)
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--skip-256", action="store_true")
    p.add_argument("--channels-256", type=int, default=6)
    p.add_argument("--images-256", type=int, default=2)
    p.add_argument("--vjp-batch-256", type=int, default=8)
    p.add_argument("--vjp-chunks-256", type=int, default=1)
    p.add_argument("--exit-256", type=int, default=128)
    p.add_argument("--resolution-256", type=int, default=256, help="(smaller for a quick smoke run)")
    p.add_argument("--clip-256", default="ViT-B-32", help="open_clip name or JSON config (random weights)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# torch threads {torch.get_num_threads()}; {load()}", flush=True)
    out = {}
    if not args.skip_demo:
        out["demo"] = demo_world(args)
        out["demo"]["m"] = args.images
        print_demo(out["demo"])
    if not args.skip_256:
        out["256"] = world_256(args)
        print_256(out["256"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
