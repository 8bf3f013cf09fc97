"""Train the shipped demo generator (models/demo/generator.pt): shapes.train_generator run in its phases.

    python -m shapes.demo_recipe                     # about 60 CPU-minutes on one thread
    python -m shapes.demo_recipe --scale 0.01 --out /tmp/g.pt --work-dir /tmp/recipe     # a quick trial

Phase 1 trains from scratch: stage 1 (synthesis), stage 2 (mapping), then style mixing from the start
(stage 5, 7,000 steps, splits "3,5"; no joint or refine stage). Each later phase is stage 5 again from the
previous phase's generator (`init`) with its own settings: finer splits ("2,3,5,6": position, size, shape,
colour, background each from their own z), then far pushes of the size and background layers toward group
targets with a light sparsity, then a sixth z for the last toRGB layer that the target ignores ("2,3,5,6,7"),
pushes toward directed targets (the size or background class the push moved toward) and a focus on the
shape and size drawn worst, then pushes on the shape layer (5) too, out to 8 sigma, with the shape the image
moved toward as the target, and a loss on the pixels that tell each circle, square or cross target from the
shape most like it (`distinct_weight`). Every phase writes its generator to the work dir and resumes from its own
checkpoint, so an interrupted recipe continues where it stopped; finished phases are not run again. The weights
follow float rounding, which differs between CPUs: phases 1-4 reproduce the shipped fourth phase bit for bit on
the machine that trained them, and phase 5 the shipped generator from that file on another machine (an AMD
EPYC); elsewhere the recipe gives a generator of the same quality whose single-attribute channels may differ
(MODEL_CARD.md, tenth and thirteenth rounds).
See models/demo/MODEL_CARD.md for what each phase did to the strict probe and the atlas edits (issue 17).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from models.demo import DEMO_DIR
from models.files import atomic_path
from shapes import one_line_errors

MIXING = dict(mixing_splits="2,3,5,6", affine_l1=0.3)
PUSHES = dict(  # far pushes of the size and background layers (3, 9) with a light sparsity there
    perturb_share=0.25,
    perturb_layers="3,9",
    perturb_sigmas=6.0,
    style_sparsity=0.3,
    sparsity_layers="3,9",
    rgb_spread=0.3,
    region_weight=3.0,
)
TARGETS = dict(  # a sixth z for the last toRGB layer alone, directed targets, a focus on the worst-drawn cell
    **(MIXING | dict(mixing_splits="2,3,5,6,7")),
    **PUSHES,
    perturb_target="directed",
    focus_share=0.15,
)
SHAPE = dict(  # pushes on the shape layer (5) too, out to 8 sigma, and the distinct-pixel loss
    perturb_share=0.35,
    perturb_layers="3,5,9",
    perturb_sigmas=8.0,
    pin_channels="5:78",  # the fourth phase's best shape channel on the training machine (MODEL_CARD.md)
    perturb_target="directed-shape",
    distinct_weight=6.0,
    distinct_shapes="circle,square,cross",  # not triangles: their corners are what the circle fallback must round
)
PHASES = (  # GeneratorTrainConfig fields per phase, on top of its defaults
    dict(joint_steps=0, refine_steps=0, mixing_steps=7000, mixing_splits="3,5", affine_l1=0.3),
    dict(mixing_steps=3000, **MIXING),
    dict(mixing_steps=2000, **MIXING, **PUSHES, perturb_target="group"),
    dict(mixing_steps=2000, **TARGETS),
    dict(mixing_steps=650, **(TARGETS | SHAPE)),
)
STEP_FIELDS = ("synthesis_steps", "mapping_steps", "joint_steps", "refine_steps", "mixing_steps")


def phase_configs(work_dir: str, seed: int = 0, threads: int = 1, scale: float = 1.0) -> list:
    """The GeneratorTrainConfig of every phase: each writes work_dir/phase<k>.pt, and phases after the first
    start from the one before. scale multiplies every stage's steps (at least 1 step each): a trial run."""
    from shapes.train_generator import GeneratorTrainConfig

    work, base = Path(work_dir), GeneratorTrainConfig()
    out = []
    for k, phase in enumerate(PHASES):
        fields = dict(phase)
        for name in STEP_FIELDS:
            steps = fields.get(name, getattr(base, name))
            fields[name] = max(1, round(steps * scale)) if steps else 0
        out.append(
            GeneratorTrainConfig(
                **fields,
                init=str(work / f"phase{k - 1}.pt") if k else "",
                seed=seed,
                threads=threads,
                out=str(work / f"phase{k}.pt"),
                work_dir=str(work / f"phase{k}"),
            )
        )
    return out


def train_recipe(out: str, work_dir: str, seed: int = 0, threads: int = 1, scale: float = 1.0) -> Path:
    """Runs the phases not yet finished (a phase is finished when its generator file exists) and copies the
    last phase's generator to `out` (atomically)."""
    from shapes.train_generator import train

    configs = phase_configs(work_dir, seed, threads, scale)
    for k, cfg in enumerate(configs):
        if Path(cfg.out).exists():
            print(f"phase {k}: done ({cfg.out})", flush=True)
            continue
        print(f"phase {k}: {dataclasses.asdict(cfg)}", flush=True)
        train(cfg)
    with atomic_path(out) as tmp:
        shutil.copyfile(configs[-1].out, tmp)
    print(f"wrote {out}", flush=True)
    return Path(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEMO_DIR / "generator.pt"))
    ap.add_argument("--work-dir", default="out/demo_train/recipe")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps (a quick trial)")
    args = ap.parse_args(argv)
    with one_line_errors():  # a phase's bad input, e.g. an unreadable phase file
        train_recipe(args.out, args.work_dir, args.seed, args.threads, args.scale)


if __name__ == "__main__":
    main()
