"""The latent mapper on the shapes world (issue 12 acceptance): train one for a prompt, judge it with the pixel
classifier on fresh samples, and time training and applying it.

    python benchmarks/mapper.py --prompt red --steps 400 --batch-size 16 [--identity demo] [--threads 1]

Prints the training time, the share of fresh samples (seeds from --eval-seed, valid and not already what
the prompt asks) that moved toward the prompt and kept their other attributes, and ms per image to apply
the mapper, with the machine load beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapes.judge import TARGETS, fresh_samples, judge_latents  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompt", default="red", choices=sorted(TARGETS))
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--norm", default="ws", choices=["ws", "channels"])
    p.add_argument("--l2-lambda", type=float, default=0.8)
    p.add_argument("--id-lambda", type=float, default=0.1)
    p.add_argument("--identity", default=None, help='"demo" or an identity file (default: none).')
    p.add_argument("--eval", type=int, default=32, help="Fresh samples to judge.")
    p.add_argument("--eval-seed", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save", default=None, help="Save the mapper here.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from models.clip import load_clip
    from models.stylegan2 import load_generator
    from query.config import MapperTrainConfig
    from query.mapper_train import train_mapper

    gen, clip = load_generator("demo"), load_clip("demo")
    identity = None
    if args.identity:
        from models.identity import load_identity

        identity = load_identity(args.identity)
    load_before = os.getloadavg()
    t = time.perf_counter()
    mapper = train_mapper(
        gen,
        clip,
        args.prompt,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr or MapperTrainConfig.lr,
        norm=args.norm,
        l2_lambda=args.l2_lambda,
        id_lambda=args.id_lambda,
        identity=identity,
        seed=args.seed,
        progress=not args.json,
    )
    train_s = time.perf_counter() - t
    if args.save:
        mapper.save(args.save)
    ws, seeds = fresh_samples(gen, args.eval, args.prompt, args.eval_seed)
    with torch.no_grad():
        ws_plus = ws[:, None].expand(-1, gen.num_ws, -1)
        mapper(ws_plus)  # warm-up
        reps = 20
        t = time.perf_counter()
        for _ in range(reps):
            ws_edit = mapper(ws_plus)
        apply_ms = (time.perf_counter() - t) / reps / len(ws) * 1000
    result = dict(
        prompt=args.prompt,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr or MapperTrainConfig.lr,
        norm=args.norm,
        identity=args.identity,
        train_seconds=round(train_s, 1),
        train_cpu_seconds=mapper.info["cpu_seconds"],
        apply_ms_per_image=round(apply_ms, 4),
        final_losses=mapper.info["final_losses"],
        judged=judge_latents(gen, ws_plus, ws_edit, args.prompt),
        threads=args.threads,
        load_before=[round(v, 2) for v in load_before],
        load_after=[round(v, 2) for v in os.getloadavg()],
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
    return result


if __name__ == "__main__":
    main()
