"""--dry-run: what a build still has to do and about how long it takes, from a few timed calls.

Samples are mapped, renders are rendered and CLIP-encoded (the exact relevance stage's work) and texts are
encoded, each timed after a warm-up call in batches that grow toward the build's own batch sizes for about a
second; the per-unit times are multiplied by the units the build still needs (chunks already in work/ are
done). The jacobian relevance method (SPEC §3b) counts forward-equivalents and is timed by its one-image
probe (pipeline/jacobian.py `probe`). An extrapolation: a batch smaller than the build's (a slow model on a
CPU) makes it pessimistic.
"""

from __future__ import annotations

import time

import torch

from index.work import JACOBIAN, chunk_path
from pipeline import jacobian as jacobian_stage
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


def relevance_plan(generator, embedder, cfg, num_channels: int, probe: bool = True) -> dict:
    """The relevance stage's work for both methods, and for jacobian a memory / time estimate from its probe.

    exact: 2 M C renders (SPEC §3); jacobian: forward-equivalents per chunk (pipeline/jacobian.py chunk_work).
    """
    M, D = cfg.num_images, int(embedder.dim)
    out = dict(
        method=cfg.method,
        exact_renders=2 * M * num_channels,
        jacobian_forward_equivalents=sum(jacobian_stage.chunk_work(cfg, D, num_channels)),
        check_channels=min(cfg.check_channels, num_channels),
        chunks=jacobian_stage.num_chunks(cfg)
        if cfg.method == "jacobian"
        else relevance_stage.num_chunks(num_channels, cfg),
    )
    out["ratio"] = out["exact_renders"] / out["jacobian_forward_equivalents"]
    if not probe or cfg.method != "jacobian":
        return out
    out.update(jacobian_stage.probe(generator, embedder, cfg))
    K, B = min(cfg.chunk_images, M), min(cfg.vjp_batch, D)
    graph, largest = out["graph_bytes_per_image"], out["largest_saved_bytes"]
    out["memory_estimate_bytes"] = K * graph + 3 * B * K * largest + K * num_channels * D * 28  # columns f32 + f64
    out["time_estimate_seconds"] = sum(jacobian_seconds(cfg, D, num_channels, out))
    return out


def jacobian_seconds(cfg, dim: int, num_channels: int, probed: dict) -> list[float]:
    """Seconds of every jacobian chunk from the probe: a forward and D backwards per image; the check, 4 M renders
    per channel (each about a forward)."""
    forward, backward = probed["probe_forward_seconds"], probed["probe_backward_seconds"]
    blocks = [(b - a) * (forward + dim * backward) for a, b in chunk_ranges(cfg.num_images, cfg.chunk_images)]
    check = 4 * cfg.num_images * min(cfg.check_channels, num_channels) * forward
    return blocks + ([check] if cfg.check_channels > 0 else [])


def chunk_units(plan: dict, cfg) -> dict:
    """{stage: (work-folder stage, [units of every chunk])}: samples; renders (exact) or forward-equivalents
    (jacobian); texts."""
    r = cfg.relevance
    if r.method == "jacobian":
        relevance = (JACOBIAN, jacobian_stage.chunk_work(r, int(plan["dim"]), plan["num_channels"]))
    else:
        relevance = (
            "relevance",
            [2 * r.num_images * (b - a) for a, b in chunk_ranges(plan["num_channels"], r.chunk_channels)],
        )
    return dict(
        stats=("stats", [b - a for a, b in chunk_ranges(cfg.stats.num_samples, cfg.stats.chunk_size)]),
        relevance=relevance,
        vocabulary=(
            "vocabulary",
            [
                (b - a) * len(plan["templates"])
                for a, b in chunk_ranges(len(plan["phrases"]), cfg.vocabulary.chunk_phrases)
            ],
        ),
    )


def done_chunks(out_dir, plan: dict, cfg, state: str = "partial") -> dict:
    """{stage: [chunk done?]}: a partial build's chunk files in work/; everything when complete, nothing else."""
    return {
        stage: [
            state == "complete" or (state == "partial" and chunk_path(out_dir, work, i).exists())
            for i in range(len(units))
        ]
        for stage, (work, units) in chunk_units(plan, cfg).items()
    }


def done_units(out_dir, plan: dict, cfg, state: str = "partial") -> dict:
    """{stage: [units done, units planned]} from the chunk files already in work/ (a partial build)."""
    done = done_chunks(out_dir, plan, cfg, state)
    return {
        stage: [sum(n for n, d in zip(units, done[stage]) if d), sum(units)]
        for stage, (_, units) in chunk_units(plan, cfg).items()
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


def estimate(
    generator, embedder, plan: dict, cfg, out_dir, state: str = "partial", relevance: dict | None = None
) -> dict:
    """{state, done: {stage: [units done, planned]}, units, seconds: {stage: s, total: s}, per_unit, basis}.

    state: what out_dir holds for this plan (STATES); only a partial build's chunks count as done.
    relevance: relevance_plan(...) with its probe, when the caller has it (the jacobian method's timings).
    """
    done = done_units(out_dir, plan, cfg, state)
    per = unit_seconds(generator, embedder, plan, cfg)
    unit = dict(stats="sample", relevance="render", vocabulary="text")
    seconds = {stage: (planned - finished) * per[unit[stage]] for stage, (finished, planned) in done.items()}
    units = dict(stats="samples", relevance="renders", vocabulary="texts")
    basis = (
        f"timed on this machine: {per['batches']['sample']} samples, {per['batches']['render']} renders "
        f"+ image encodes, {per['batches']['text']} texts per call"
    )
    if cfg.relevance.method == "jacobian":
        if not relevance or "probe_forward_seconds" not in relevance:
            relevance = relevance_plan(generator, embedder, cfg.relevance, plan["num_channels"])
        chunk_seconds = jacobian_seconds(cfg.relevance, int(plan["dim"]), plan["num_channels"], relevance)
        finished = done_chunks(out_dir, plan, cfg, state)["relevance"]
        seconds["relevance"] = sum(s for s, d in zip(chunk_seconds, finished) if not d)
        units["relevance"] = "forward-equivalents"
        basis += "; jacobian relevance from a one-image forward and backward"
    seconds["total"] = sum(seconds.values())
    return dict(
        state=state, state_text=STATES[state], done=done, units=units, seconds=seconds, per_unit=per, basis=basis
    )
