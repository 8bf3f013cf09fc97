"""Calibrating edit_text's auto test on the shapes world: for every attribute word, does the global direction
work (the pixel classifier's verdict) and what does the CLIP test measure on the same images?

    python benchmarks/edit_auto.py --atlas out/demo_atlas [--n 12]
    python benchmarks/edit_auto.py --atlas out/demo_atlas --acceptance red circle [--identity demo]

A global edit "works" for a prompt when it reaches the prompt's attribute value in >= 75 % of the images
and keeps the other attributes in >= 75 %. The CLIP test (query/edit_text.py) must pass the prompts that
work and fail the ones that do not; the table prints both so the threshold can be read off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapes.judge import TARGETS, fresh_samples, judge_images  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--atlas", default="atlas")
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--seed", type=int, default=2000)
    p.add_argument("--alpha", type=float, default=4.0)
    p.add_argument("--beta", type=float, default=0.15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--acceptance",
        nargs="*",
        default=None,
        help="Instead of the table: run edit_text(method='auto') on --n fresh samples per prompt and judge.",
    )
    p.add_argument("--identity", default=None, help='Identity for the optimization fallback ("demo", a file).')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.acceptance is not None:
        return acceptance(args)
    from models.clip import load_clip
    from models.stylegan2 import load_generator
    from query import Atlas
    from query.edit_text import clip_movement, global_works

    gen, clip = load_generator("demo"), load_clip("demo")
    atlas = Atlas.open(args.atlas, generator=gen, embedder=clip)
    rows = []
    for prompt in TARGETS:
        ws, _ = fresh_samples(gen, args.n, prompt, args.seed)
        ws = ws[:, None].expand(-1, gen.num_ws, -1)
        d = atlas.direction(prompt, beta=args.beta)
        edited = atlas.edit(ws, d, args.alpha)
        judged = judge_images(atlas.render(ws), edited, prompt)
        kept = np.mean([v for k, v in judged.items() if k.startswith("kept_")])
        reached = judged["reached"]
        m = clip_movement(atlas, atlas.render(ws), edited, prompt)
        rows.append(
            dict(
                prompt=prompt,
                num_c=int(d.num_c),
                reached=reached,
                kept_others=float(kept),
                works=bool(reached >= 0.75 and kept >= 0.75),
                median_alignment=round(m["median_alignment"], 3),
                median_gain=round(m["median_gain"], 4),
                rank_before=round(m["median_rank_before"], 3),
                rank_after=round(m["median_rank_after"], 3),
                auto_global=global_works(m),
            )
        )
    if args.json:
        print(json.dumps(dict(rows=rows, load=os.getloadavg()), indent=2))
        return rows
    print(
        f"{'prompt':>18} {'C':>4} {'reached':>8} {'kept':>6} {'works':>6} {'rank0':>6} {'rank1':>6} {'auto':>7} "
        f"{'align':>7} {'gain':>8}"
    )
    for r in sorted(rows, key=lambda r: r["rank_after"]):
        print(
            f"{r['prompt']:>18} {r['num_c']:4d} {r['reached']:8.0%} {r['kept_others']:6.0%} {str(r['works']):>6} "
            f"{r['rank_before']:6.1%} {r['rank_after']:6.1%} {'global' if r['auto_global'] else 'other':>7} "
            f"{r['median_alignment']:7.3f} {r['median_gain']:+8.4f}"
        )
    print("load", os.getloadavg())
    return rows


def acceptance(args) -> list[dict]:
    """edit_text auto on fresh samples: the method it took, why, and the classifier's verdict."""
    import time

    from models.clip import load_clip
    from models.stylegan2 import load_generator
    from query import Atlas

    gen, clip = load_generator("demo"), load_clip("demo")
    atlas = Atlas.open(args.atlas, generator=gen, embedder=clip)
    identity = None
    if args.identity:
        from models.identity import load_identity

        identity = load_identity(args.identity)
    out = []
    for prompt in args.acceptance or ["red", "circle"]:
        ws, seeds = fresh_samples(gen, args.n, prompt, args.seed)
        ws = ws[:, None].expand(-1, gen.num_ws, -1)
        t = time.perf_counter()
        result = atlas.edit_text(ws, prompt, alpha=args.alpha, beta=args.beta, identity=identity)
        seconds = time.perf_counter() - t
        judged = judge_images(atlas.render(ws), result.images, prompt)
        row = dict(
            prompt=prompt,
            n=len(seeds),
            seeds=seeds,
            method=result.method,
            reason=result.reason,
            seconds=round(seconds, 2),
            judged=judged,
            load=os.getloadavg(),
        )
        out.append(row)
        print(json.dumps(row) if args.json else f"{prompt!r}: {result.method} ({result.reason})\n    {judged}")
    return out


if __name__ == "__main__":
    main()
