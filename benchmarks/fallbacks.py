"""Seconds per edit: global directions vs latent optimisation (SPEC §6) and inversion, in the same run.

Two model pairs: the shapes world (demo StyleGAN2 32 px + demo CLIP) and a 256 px StyleGAN2 (config-f widths)
with ViT-B-32, both with random weights (the architecture, not the weights, sets the cost). A global edit
is `Atlas.direction` + `Atlas.edit` on an atlas of the generator's layout (synthetic relevance at the
generator's shapes); optimisation and inversion time a few steps after a warm-up step and scale to their
default step counts (300, 500). The paper's figures (StyleCLIP, one GPU) are printed beside ours.
With --acceptance (or --only-acceptance, without the timings) it also prints the shapes-world acceptance of
issue 11 (pixel classifier; one row per sample pool x torch thread count; --generator for another generator).

    .venv/bin/python benchmarks/fallbacks.py [--threads 2] [--steps 3] [--acceptance] [--pools 2,3,4]
    .venv/bin/python benchmarks/fallbacks.py --only-acceptance --pools 2,3,4 --acceptance-threads 1,2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

PAPER = dict(global_s=0.072, optimize_s=98.0)  # StyleCLIP Table (per edit, one GPU)


def synthetic_atlas(gen):
    """An Atlas over random relevance rows laid out like the generator's conv layers, with the generator."""
    from query import Atlas
    from query.synthetic import synthetic_atlas_data

    layers = [dict(layer, in_atlas=layer["kind"] == "conv") for layer in gen.style_layers]
    data = synthetic_atlas_data(layers=layers, dim=32, vocab=["edit"] + [f"phrase {i}" for i in range(49)])
    return Atlas(data, generator=gen, check_fingerprints=False)


def per_call(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure(name: str, gen, clip, steps: int) -> dict:
    from query.inversion import invert
    from query.optimization import optimize

    atlas = synthetic_atlas(gen)
    ws = gen.sample_ws(1, seed=0, psi=0.7)
    global_s = per_call(lambda: atlas.edit(ws, atlas.direction("edit", beta=0.05), 4.0), 5)
    opt_s = per_call(lambda: optimize(gen, clip, ws, "a red shape", steps=steps, progress=False), 1) / steps
    with torch.no_grad():
        target = gen.synthesize(gen.styles(ws))
    inv_s = per_call(lambda: invert(gen, target, steps=steps, progress=False), 1) / steps
    return dict(
        name=name, global_s=global_s, opt_step=opt_s, optimize_s=opt_s * 300, inv_step=inv_s, invert_s=inv_s * 500
    )


def edit_pool(gen, clip, ident, prompt: str, seed: int, threads: int, n: int = 12, **optimize_kw) -> dict:
    """optimize(..., prompt) on pool `seed` (shapes.judge.pool_samples) with `threads` torch threads -> figures."""
    from query.optimization import optimize
    from shapes import torch_threads
    from shapes.classifier import classify
    from shapes.evaluate import zero_shot_read
    from shapes.judge import TARGETS, pool_samples, redness

    attr, value = TARGETS[prompt]
    keep = "colour" if attr == "shape" else "shape"
    ws, before = pool_samples(gen, n, prompt, seed)
    with torch_threads(threads):
        start = time.perf_counter()
        torch.manual_seed(0)
        edited = optimize(gen, clip, ws, prompt, identity=ident, progress=False, **optimize_kw)
        seconds = time.perf_counter() - start
    with torch.no_grad():
        images = gen.synthesize(gen.styles(edited))
    after = classify(images)
    guide = zero_shot_read(clip, images, names=(attr,))[attr]  # what the CLIP that steers the edit reads
    per_sample = dict(
        reached=after[attr] == value,
        clip_reached=guide == value,
        kept=after[keep] == before[keep],
        valid=after["valid"],
        redder=redness(after["rgb"]) > redness(before["rgb"]) + 0.02,
    )  # [n] bools each
    return dict(
        **{k: float(v.mean()) for k, v in per_sample.items()},
        seconds=seconds,
        samples=dict(per_sample, start=before["colour"] if prompt == "red" else before["shape"]),
    )


def merged_samples(pools: list[dict]) -> dict:
    """Every pool's per-sample arrays (edit_pool's "samples") joined into one array per key."""
    return {k: np.concatenate([p["samples"][k] for p in pools]) for k in pools[0]["samples"]}


def by_start(prompt: str, pools: list[dict]) -> list[str]:
    """Rows of one edit's figures over every pool, grouped by the samples' starting colour ("red") or shape."""
    from shapes import world

    names = world.COLOURS if prompt == "red" else world.SHAPES
    merged = merged_samples(pools)
    rows = []
    for i, name in enumerate(names):
        pick = merged["start"] == i
        if pick.any():
            f = {k: merged[k][pick].mean() for k in ("reached", "kept", "valid", "redder")}
            rows.append(
                f"| {prompt} | {name} | {int(pick.sum())} | {f['reached']:.0%} | {f['kept']:.0%} | {f['valid']:.0%} | "
                + (f"{f['redder']:.0%} |" if prompt == "red" else "- |")
            )
    return rows


def guide_and_judge(edits: dict) -> str:
    """A table: how often the demo CLIP that steers each edit (zero-shot, class prompts) reads the edited image as
    the prompt's class, beside the pixel classifier that judges it; every pool together, valid images only."""
    lines = [
        "\nThe guide and the judge (valid edited images; CLIP: zero-shot over the class prompts):\n"
        "| edit | valid images | classifier: reached | CLIP: reached | both agree | classifier misses that CLIP reads "
        "as reached |\n|---|---|---|---|---|---|"
    ]
    for prompt, pools in edits.items():
        m = merged_samples(pools)
        ok = m["valid"]
        judge, guide = m["reached"][ok], m["clip_reached"][ok]
        misses = ~judge
        lines.append(
            f"| {prompt} | {int(ok.sum())} | {judge.mean():.0%} | {guide.mean():.0%} | {(judge == guide).mean():.0%} | "
            f"{int(guide[misses].sum())} of {int(misses.sum())} |"
        )
    return "\n".join(lines)


def acceptance(pools, threads=(1,), generator="demo", invert_pools=(), **optimize_kw) -> list[str]:
    """The issue-11 figures on the shapes world (default settings, demo identity): one row per pool x threads.

    Targets: toward "circle" >= 75 % circles and >= 75 % colour kept; toward "red" >= 90 % shape kept."""
    from models.clip import load_clip
    from models.identity import load_identity
    from models.stylegan2 import load_generator
    from query.inversion import invert

    gen, clip, ident = load_generator(generator), load_clip("demo"), load_identity("demo")
    rows, edits = [], dict(circle=[], red=[])
    for seed in pools:
        for t in threads:
            c = edit_pool(gen, clip, ident, "circle", seed, t, **optimize_kw)
            r = edit_pool(gen, clip, ident, "red", seed, t, **optimize_kw)
            edits["circle"].append(c)
            edits["red"].append(r)
            met = c["reached"] >= 0.75 and c["kept"] >= 0.75 and r["kept"] >= 0.9
            rows.append(
                f"| {seed} | {t} | {c['reached']:.0%} | {c['kept']:.0%} | {c['valid']:.0%} | {r['kept']:.0%} | "
                f"{r['reached']:.0%} | {r['redder']:.0%} | {r['valid']:.0%} | {'yes' if met else 'NO'} | "
                f"{c['seconds']:.0f} / {r['seconds']:.0f} |"
            )
            print(rows[-1], flush=True)
    if pools and threads:
        rows.append(
            "\nBy the sample's starting colour (red) or shape (circle), every pool above together:\n"
            "| edit | start | samples | reached | kept (circle: colour, red: shape) | valid | redder |\n"
            "|---|---|---|---|---|---|---|"
        )
        print(rows[-1])
        for prompt in ("circle", "red"):
            grouped = by_start(prompt, edits[prompt])
            rows += grouped
            print("\n".join(grouped), flush=True)
        rows.append(guide_and_judge(edits))
        print(rows[-1], flush=True)
    for seed in invert_pools:
        ws16 = gen.sample_ws(16, seed=seed, psi=0.7)
        with torch.no_grad():
            target16 = gen.synthesize(gen.styles(ws16))
        _, det = invert(gen, target16, steps=150, progress=False, return_details=True)
        rows.append(f"invert 16 samples (seed {seed}, 150 steps): median PSNR {np.median(det['psnr']):.1f} dB")
        print(rows[-1], flush=True)
    return rows


ACCEPTANCE_HEADER = (
    "| pool seed | threads | circle: circles | circle: colour kept | circle: valid | red: shape kept | red: red | "
    "red: redder | red: valid | targets met | seconds (circle / red) |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed optimisation / inversion steps per model pair")
    ap.add_argument("--acceptance", action="store_true", help="also measure the shapes-world acceptance figures")
    ap.add_argument("--pools", default="2,3,4", help="sample pools (seeds) for --acceptance (defaults tuned on 1)")
    ap.add_argument("--acceptance-threads", default="1,2", help="torch thread counts for --acceptance, e.g. 1,2")
    ap.add_argument("--generator", default="demo", help="generator for --acceptance (a generator.pt path or demo)")
    ap.add_argument("--invert-pools", default="2", help="seeds of the 16 samples inverted by --acceptance ('' = none)")
    ap.add_argument("--only-acceptance", action="store_true", help="skip the timing table")
    ap.add_argument("--id-lambda", type=float, default=None, help="--acceptance with this id_lambda (default 0.005)")
    ap.add_argument("--latent-noise", type=float, default=None, help="--acceptance with this latent_noise (default 1)")
    ap.add_argument("--spread-lambda", type=float, default=None, help="--acceptance with this spread_lambda (0.08)")
    ap.add_argument("--skip-256", action="store_true", help="only the shapes world")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from models.clip import load_clip
    from models.stylegan2 import StyleGAN2Generator, load_generator

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"threads {args.threads}; load before: {load}")
    if args.only_acceptance:
        return run_acceptance(args)
    results = [measure("shapes world (32 px, demo CLIP)", load_generator("demo"), load_clip("demo"), args.steps)]
    if not args.skip_256:
        gen = StyleGAN2Generator(256, 512, 8, seed=0).eval()
        gen.update_mean_w(n=2000)
        results.append(
            measure("StyleGAN2 256 px + ViT-B-32 (random weights)", gen, load_clip("ViT-B-32", seed=0), args.steps)
        )
    print(
        "\n| models | global direction, s/edit | optimisation, s/step | optimisation, s/edit (300 steps) | "
        "inversion, s/step | inversion, s/image (500 steps) | optimisation / global |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['name']} | {r['global_s']:.3f} | {r['opt_step']:.3f} | {r['optimize_s']:.1f} | "
            f"{r['inv_step']:.3f} | {r['invert_s']:.1f} | {r['optimize_s'] / r['global_s']:,.0f}x |"
        )
    print(
        f"| paper (StyleCLIP, FFHQ 1024, one GPU) | {PAPER['global_s']:.3f} | - | {PAPER['optimize_s']:.0f} | "
        f"- | - | {PAPER['optimize_s'] / PAPER['global_s']:,.0f}x |"
    )
    if args.acceptance:
        run_acceptance(args)
    print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


def run_acceptance(args):
    kw = {k: getattr(args, k) for k in ("id_lambda", "latent_noise", "spread_lambda") if getattr(args, k) is not None}
    settings = "default settings" + "".join(f", {k} {v}" for k, v in kw.items())
    print(
        f"\nShapes world ({args.generator}), {settings} + demo identity, 12 valid samples per edit "
        "(shapes.judge.pool_samples), pixel classifier:"
    )
    print(ACCEPTANCE_HEADER, flush=True)
    acceptance(
        [int(s) for s in args.pools.split(",")],
        [int(t) for t in args.acceptance_threads.split(",")],
        args.generator,
        [int(s) for s in args.invert_pools.split(",") if s.strip()],
        **kw,
    )
    print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
