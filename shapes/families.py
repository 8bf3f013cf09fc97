"""Disentanglement of the demo generator per attribute family (colour, shape, size, background, position):
its strict single-attribute StyleSpace channels, and global-direction edits through an atlas, one prompt each.

Used by benchmarks/demo_quality.py and shapes/channel_figure.py; judged by the pixel classifier, never by CLIP.
"""

from __future__ import annotations

import numpy as np
import torch

from shapes import world
from shapes.classifier import classify
from shapes.judge import TARGETS, fresh_samples, redness
from shapes.probe import EDIT_ATTRIBUTES, channel_effects, single_attribute_channels

# one prompt per family for the atlas edits (position: the vocabulary's "left"; no judge.TARGETS entry)
FAMILY_PROMPTS = dict(colour="red", shape="circle", size="large", background="light background", position="left")
MIN_GROWTH = 0.5  # px of radius for "enlarged"
MIN_LIGHTENING = 0.05  # grey level for "lightened"
MIN_REDDENING = 0.02  # redness for "redder" (as tests/test_query_shapes.py)
MIN_MOVE = 1.0  # px of shape centre for "moved left"
PROBE_SETS = 6  # sample sets (seeds 0, 1, ...) the best channels are re-read on: in one set of 16 samples, one
# sample moves a rate by 0.07-0.08, so "strict" on the probe's own set alone can be one lucky sample


def _side_effects(record: dict, family: str, key: str = "rates") -> dict[str, float]:
    return {a: round(v, 3) for a, v in record[key].items() if a != family}


def best_channels(records: list[dict], min_valid: float = 0.5) -> dict[str, dict]:
    """Per family: the number of strict single-attribute channels (shapes.probe.single_attribute_channels),
    and the best channel: the strongest strict one if any, else the one whose flip rate most exceeds its
    largest side effect, else (nothing flips it) the one whose continuous shift most exceeds its largest other
    shift (valid in >= min_valid of the samples); with its flip rate, shift and side effects."""
    single = single_attribute_channels(records, min_valid=min_valid)
    usable = [r for r in records if r["valid"] >= min_valid]
    out = {}
    for family in EDIT_ATTRIBUTES:
        if single[family]:
            best, strict = single[family][0], True
        elif usable:
            best = max(usable, key=lambda r: r["rates"][family] - max(_side_effects(r, family).values()))
            if best["rates"][family] == 0:  # nothing flips it: the channel that moves it most alone (SHIFT_UNITS)
                best = max(usable, key=lambda r: r["shifts"][family] - max(_side_effects(r, family, "shifts").values()))
            strict = False
        else:
            out[family] = dict(single_attribute=0, best=None)
            continue
        out[family] = dict(
            single_attribute=len(single[family]),
            best=dict(
                layer=best["layer"],
                channel=best["channel"],
                strict=strict,
                flip_rate=round(best["rates"][family], 3),
                side_effects=_side_effects(best, family),
                shift=round(best["shifts"][family], 3),  # in SHIFT_UNITS, with what else it moves
                shift_side_effects=_side_effects(best, family, "shifts"),
                valid=round(best["valid"], 3),
            ),
        )
    return out


def pooled_record(records: list[dict], n: int) -> dict:
    """One probe record from a channel's records on several sample sets of n samples each: valid over all
    samples, and rates and shifts over the valid ones together (each set weighted by its valid samples)."""
    counts = np.array([r["valid"] * n for r in records])
    total = float(counts.sum())

    def pool(key: str) -> dict[str, float]:
        return {
            a: float(sum(c * r[key][a] for c, r in zip(counts, records)) / total) if total else 0.0
            for a in EDIT_ATTRIBUTES
        }

    first = records[0]
    return dict(
        layer=first["layer"],
        channel=first["channel"],
        valid=total / (n * len(records)),
        rates=pool("rates"),
        shifts=pool("shifts"),
    )


def recheck_best(gen, best: dict[str, dict], sets: int = PROBE_SETS, n: int = 16) -> dict[str, dict]:
    """The best channel of every family (best_channels) re-read by the strict probe on `sets` sample sets
    (seeds 0 .. sets - 1; seed 0 is the probe's own): per family, in how many sets it is strict for the
    family, and its flip rate and side effects pooled over every set (pooled_record)."""
    chosen = {f: (b["best"]["layer"], b["best"]["channel"]) for f, b in best.items() if b["best"] is not None}
    per_set = [
        {(r["layer"], r["channel"]): r for r in channel_effects(gen, n=n, seed=seed, channels=set(chosen.values()))}
        for seed in range(sets)
    ]
    out = {}
    for family, key in chosen.items():
        records = [s[key] for s in per_set]
        pooled = pooled_record(records, n)
        out[family] = dict(
            layer=key[0],
            channel=key[1],
            sets=sets,
            strict_sets=sum(bool(single_attribute_channels([r])[family]) for r in records),
            strict_pooled=bool(single_attribute_channels([pooled])[family]),
            flip_rate=round(pooled["rates"][family], 3),
            side_effects=_side_effects(pooled, family),
            valid=round(pooled["valid"], 3),
        )
    return out


@torch.no_grad()
def ends_by_cell(gen, layer: int, channel: int, n: int = 192, seed: int = 100, alpha: float = 5.0, psi: float = 0.7):
    """Where a channel's shape side effect sits: per (size, shape) cell of z, of the n psi-truncated samples
    whose +- alpha sigma images are both valid (the strict probe's push, statistics and sampling, on a sample set
    of its own), the share whose shape is the same at both ends (the probe's criterion) and the share whose
    image at each end shows the shape z asked for. A z-cross drawn as a circle that one end draws as a cross
    is a side effect of that channel which is really the generator's. -> {"small cross": dict(n, same, plus,
    minus) or None where no sample of the cell is valid at both ends}."""
    from shapes import style_stats
    from shapes.train_generator import attributes_from_z

    g = torch.Generator().manual_seed(seed)
    mu, sigma = style_stats(gen, 2000, psi, rng=g)
    z = torch.randn(n, gen.z_dim, generator=g)
    base = gen.styles(gen.truncate(gen.mapping(z), psi))
    ends = []
    for sign in (1.0, -1.0):
        styles = [s.clone() for s in base]
        styles[layer][:, channel] = mu[layer][channel] + sign * alpha * sigma[layer][channel]
        ends.append(classify(gen.synthesize(styles)))
    plus, minus = ends
    want = attributes_from_z(z)
    ok = plus["valid"] & minus["valid"]
    out = {}
    for name, size, shape in world.cells():
        cell = ok & (want["size"] == size) & (want["shape"] == shape)
        out[name] = (
            dict(
                n=int(cell.sum()),
                same=float((plus["shape"][cell] == minus["shape"][cell]).mean()),
                plus=float((plus["shape"][cell] == shape).mean()),
                minus=float((minus["shape"][cell] == shape).mean()),
            )
            if cell.any()
            else None
        )
    return out


def position_samples(gen, n: int, seed: int = 1000, psi: float = 0.7) -> torch.Tensor:
    """n W codes [n, w_dim] (seeds seed, seed + 1, ...) whose image is one clean shape."""
    z = torch.randn(8 * n, gen.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ws = gen.truncate(gen.mapping(z), psi)  # [8n, w_dim]
        ok = np.flatnonzero(classify(gen.synthesize(gen.styles(ws)))["valid"])[:n]
    return ws[torch.as_tensor(ok)]


def judge_family_edit(before: dict, after: dict, family: str) -> dict[str, float]:
    """What an edit toward the family's prompt did, per the pixel classifier's readings before and after:
    reached (the prompt's class, or moved left), the family's continuous change (grew, lightened, redder),
    valid_after and kept_<other attribute> for every other attribute."""
    prompt = FAMILY_PROMPTS[family]
    out = dict(n=len(before["valid"]), valid_after=float(after["valid"].mean()))
    if family == "position":
        moved = after["cx"] < before["cx"] - MIN_MOVE
        out["reached"] = out["moved_left"] = float(moved.mean())
    else:
        attr, value = TARGETS[prompt]
        out["reached"] = float((after[attr] == value).mean())
    if family == "size":
        out["grew"] = float((after["radius"] > before["radius"] + MIN_GROWTH).mean())
    if family == "background":
        out["lightened"] = float((after["grey"] > before["grey"] + MIN_LIGHTENING).mean())
    if family == "colour":
        out["redder"] = float((redness(after["rgb"]) > redness(before["rgb"]) + MIN_REDDENING).mean())
    for other in world.ATTRIBUTE_NAMES:
        if other != family:
            out[f"kept_{other}"] = float((after[other] == before[other]).mean())
    if family != "position":
        moved = np.hypot(after["cx"] - before["cx"], after["cy"] - before["cy"]) > 2 * MIN_MOVE
        out["kept_position"] = float(1 - moved.mean())
    return out


@torch.no_grad()
def family_edits(atlas, n: int = 32, alpha: float = 4.0, beta="auto", seed: int = 1000) -> dict[str, dict]:
    """Per family: the global direction of its prompt (SPEC §5, neutral = the atlas's) applied at alpha to n
    fresh psi-0.7 samples that lack the prompt's value (all clean samples for position), judged."""
    gen = atlas.generator
    out = {}
    for family, prompt in FAMILY_PROMPTS.items():
        if family == "position":
            ws = position_samples(gen, n, seed)
        else:
            try:
                ws, _ = fresh_samples(gen, n, prompt, seed)
            except ValueError as e:  # a generator that (almost) never draws anything else: nothing to edit
                out[family] = dict(prompt=prompt, error=str(e))
                continue
        ws = ws[:, None].expand(-1, gen.num_ws, -1)  # [n, num_ws, w_dim]
        d = atlas.direction(prompt, beta=beta)
        judged = judge_family_edit(classify(atlas.render(ws)), classify(atlas.edit(ws, d, alpha)), family)
        out[family] = dict(prompt=prompt, channels=int(d.num_c), beta=round(float(d.beta), 3), **judged)
    return out
