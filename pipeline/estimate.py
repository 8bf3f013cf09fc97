"""--dry-run: what a build still has to do and about how long it takes, from a few timed calls.

Samples are mapped, renders are rendered and CLIP-encoded (the relevance stage's work) and texts are encoded,
each timed after a warm-up call in batches that grow toward the build's own batch sizes for about a second;
the per-unit times are multiplied by the units the build still needs (chunks already in work/ are done).
An extrapolation: a batch smaller than the build's (a slow model on a CPU) makes it pessimistic.
"""

from __future__ import annotations

import time

import torch

from index.work import chunk_path
from pipeline import relevance as relevance_stage
from pipeline.common import chunk_ranges, generator_device, truncated_w

PROBE_SECONDS = 4.0  # about how long the larger timed call of each probe may take


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _seconds(call, n: int) -> float:
    """The faster of two timed calls of call(n), after a warm-up call."""
    call(n)
    best = float("inf")
    for _ in range(2):
        _sync()
        start = time.perf_counter()
        call(n)
        _sync()
        best = min(best, time.perf_counter() - start)
    return best


def per_unit(call, batch: int, budget: float | None = None) -> tuple[float, int]:
    """(seconds per unit in calls of `batch` units, the largest batch timed).

    A call costs about a + b n (a fixed part, then per unit). call(1) and call(k) are timed, k as large as the
    budget allows (k = batch when it fits: then the per-unit time is measured, not modelled), and the line through
    them gives (a + b batch) / batch.
    """
    budget = PROBE_SECONDS if budget is None else budget
    t1 = _seconds(call, 1)
    k = max(1, min(int(batch), int(budget / max(t1, 1e-6))))
    if k <= 1:
        return t1, 1
    tk = _seconds(call, k)
    if k == batch:
        return tk / k, k
    b = max((tk - t1) / (k - 1), 0.0)
    a = max(t1 - b, 0.0)
    return (a + b * batch) / batch, k


def done_units(out_dir, plan: dict, cfg) -> dict:
    """{stage: [units done, units planned]} from the chunk files already in work/ (a partial build)."""
    sizes = dict(
        stats=[b - a for a, b in chunk_ranges(cfg.stats.num_samples, cfg.stats.chunk_size)],
        relevance=[
            2 * cfg.relevance.num_images * (b - a)
            for a, b in chunk_ranges(plan["num_channels"], cfg.relevance.chunk_channels)
        ],
        vocabulary=[
            (b - a) * len(plan["templates"])
            for a, b in chunk_ranges(len(plan["phrases"]), cfg.vocabulary.chunk_phrases)
        ],
    )
    return {
        stage: [sum(n for i, n in enumerate(units) if chunk_path(out_dir, stage, i).exists()), sum(units)]
        for stage, units in sizes.items()
    }


@torch.no_grad()
def unit_seconds(generator, embedder, plan: dict, cfg) -> dict:
    """Seconds per sample mapped, per render (synthesize + encode_image) and per text encoded, and the batches."""
    device = generator_device(generator)
    z = torch.randn(
        max(cfg.stats.batch_size, cfg.relevance.batch_size),
        int(generator.z_dim),
        generator=torch.Generator().manual_seed(0),
    ).to(device)  # [n, z_dim]

    def map_samples(n):
        w = truncated_w(generator, z[:n], cfg.stats.psi)
        return [torch.as_tensor(s) for s in generator.styles(w)]

    styles = map_samples(cfg.relevance.batch_size)  # per layer [batch, width]

    def render(n):
        with relevance_stage._autocast(styles[0].device, cfg.relevance.precision):
            images = generator.synthesize([s[:n] for s in styles], noise_mode=cfg.relevance.noise_mode)
            return embedder.encode_image(images)

    templates, phrases = plan["templates"], plan["phrases"]
    texts = [
        templates[i % len(templates)].replace("{}", phrases[i % len(phrases)])
        for i in range(cfg.vocabulary.text_batch_size)
    ]
    sample, n_sample = per_unit(map_samples, cfg.stats.batch_size)
    rendered, n_render = per_unit(render, cfg.relevance.batch_size)
    text, n_text = per_unit(lambda n: embedder.encode_text(texts[:n]), len(texts))
    return dict(sample=sample, render=rendered, text=text, batches=dict(sample=n_sample, render=n_render, text=n_text))


STATES = {
    "new": "nothing built yet",
    "partial": "a partial build of this plan: its finished chunks are reused",
    "complete": "already complete: the build would do nothing",
    "other": "the folder holds a build with other settings or models: the build would refuse it",
}


def estimate(generator, embedder, plan: dict, cfg, out_dir, state: str = "partial") -> dict:
    """{state, done: {stage: [units done, planned]}, seconds: {stage: s, total: s}, per_unit, basis}.

    state: what out_dir holds for this plan (STATES); only a partial build's chunks count as done.
    """
    done = done_units(out_dir, plan, cfg)
    for stage, (finished, planned) in done.items():
        done[stage] = [planned if state == "complete" else finished if state == "partial" else 0, planned]
    per = unit_seconds(generator, embedder, plan, cfg)
    unit = dict(stats="sample", relevance="render", vocabulary="text")
    seconds = {stage: (planned - finished) * per[unit[stage]] for stage, (finished, planned) in done.items()}
    seconds["total"] = sum(seconds.values())
    return dict(
        state=state,
        state_text=STATES[state],
        done=done,
        seconds=seconds,
        per_unit=per,
        basis=f"timed on this machine: {per['batches']['sample']} samples, {per['batches']['render']} renders "
        f"+ image encodes, {per['batches']['text']} texts per call",
    )
