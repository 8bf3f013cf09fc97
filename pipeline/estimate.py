"""--dry-run: what a build still has to do and about how long it takes, from a few timed calls.

A few samples are mapped, a few renders are rendered and CLIP-encoded (the relevance stage's work), a batch of
texts is encoded, each timed after a warm-up call; the per-unit times are multiplied by the units the build
still needs (chunks already in work/ are done). It is an extrapolation from small batches: on a GPU, whose
throughput grows with the batch, the real build is usually faster.
"""
from __future__ import annotations

import time

import torch

from index.work import chunk_path
from pipeline import relevance as relevance_stage
from pipeline.common import chunk_ranges, generator_device, truncate

PROBE_RENDERS = 4   # renders (and image encodes) per timed call
PROBE_SAMPLES = 64  # samples mapped per timed call
PROBE_TEXTS = 64    # texts per timed call


def _timed(fn, repeats: int = 2) -> float:
    """Seconds of the fastest of `repeats` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def done_units(out_dir, plan: dict, cfg) -> dict:
    """{stage: [units done, units planned]} from the chunk files already in work/ (a partial build)."""
    sizes = dict(
        stats=[b - a for a, b in chunk_ranges(cfg.stats.num_samples, cfg.stats.chunk_size)],
        relevance=[2 * cfg.relevance.num_images * (b - a)
                   for a, b in chunk_ranges(plan["num_channels"], cfg.relevance.chunk_channels)],
        vocabulary=[(b - a) * len(plan["templates"])
                    for a, b in chunk_ranges(len(plan["phrases"]), cfg.vocabulary.chunk_phrases)])
    return {stage: [sum(n for i, n in enumerate(units) if chunk_path(out_dir, stage, i).exists()), sum(units)]
            for stage, units in sizes.items()}


@torch.no_grad()
def unit_seconds(generator, embedder, plan: dict, cfg) -> dict:
    """Seconds per sample mapped, per render (synthesize + encode_image) and per text encoded."""
    device = generator_device(generator)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(PROBE_SAMPLES, int(generator.z_dim), generator=g).to(device)  # [n, z_dim]

    def map_samples():
        w = truncate(generator, generator.mapping(z), cfg.stats.psi)
        return [torch.as_tensor(s) for s in generator.styles(w)]

    styles = [s[:PROBE_RENDERS] for s in map_samples()]  # per layer [r, width]

    def render():
        with relevance_stage._autocast(styles[0].device, cfg.relevance.precision):
            images = generator.synthesize(styles, noise_mode=cfg.relevance.noise_mode)  # [r, 3, H, W]
            return embedder.encode_image(images)

    phrases = (plan["phrases"] * PROBE_TEXTS)[:PROBE_TEXTS]
    templates = plan["templates"]
    texts = [templates[i % len(templates)].replace("{}", p) for i, p in enumerate(phrases)]
    return dict(sample=_timed(map_samples) / PROBE_SAMPLES, render=_timed(render) / PROBE_RENDERS,
                text=_timed(lambda: embedder.encode_text(texts)) / len(texts))


def estimate(generator, embedder, plan: dict, cfg, out_dir) -> dict:
    """{done: {stage: [units done, planned]}, seconds: {stage: s, total: s}, per_unit: {...}, basis: str}."""
    done = done_units(out_dir, plan, cfg)
    per = unit_seconds(generator, embedder, plan, cfg)
    unit = dict(stats="sample", relevance="render", vocabulary="text")
    seconds = {stage: (planned - finished) * per[unit[stage]] for stage, (finished, planned) in done.items()}
    seconds["total"] = sum(seconds.values())
    return dict(done=done, seconds=seconds, per_unit=per,
                basis=f"timed {PROBE_SAMPLES} samples, {PROBE_RENDERS} renders + image encodes, {PROBE_TEXTS} "
                      "text encodes on this machine (small batches: a GPU build is usually faster)")
