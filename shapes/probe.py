"""The strict +-5 sigma probe of the demo generator's StyleSpace: what the pixel classifier sees change when one
conv channel is pushed (`channel_effects`), and which channels change one attribute alone
(`single_attribute_channels`, `dominant_attribute_channels`). Used by shapes.families, the trainer's switch
channel, the channel figure and benchmarks/demo_quality.py."""

from __future__ import annotations

import numpy as np
import torch

from shapes import style_stats, world

EDIT_ATTRIBUTES = (*world.ATTRIBUTE_NAMES, "position")


# one "unit" of each attribute, for comparing continuous shifts: the mean RGB distance between two named
# colours, the gap between the dark and light backgrounds' mean greys, between the generator's two radii
# (px), and about the span of shape centres it draws (px); shape has no scale: its shift is the flip rate
SHIFT_UNITS = dict(
    colour=float(
        np.mean([np.linalg.norm(a - b) for i, a in enumerate(world.COLOUR_RGB) for b in world.COLOUR_RGB[i + 1 :]])
    ),
    background=float(np.mean(world.BRIGHTNESS_RANGE[1]) - np.mean(world.BRIGHTNESS_RANGE[0])),
    size=float(np.mean(world.RADIUS_RANGE[1]) - np.mean(world.RADIUS_RANGE[0])),
    position=8.0,
)


def _shifts(a: dict, b: dict) -> np.ndarray:
    """[n, 5] how far each attribute moved between two classifications, in SHIFT_UNITS (shape: 0 or 1)."""
    return np.stack(
        [
            (a["shape"] != b["shape"]).astype(np.float64),
            np.linalg.norm(a["rgb"] - b["rgb"], axis=1) / SHIFT_UNITS["colour"],
            np.abs(a["radius"] - b["radius"]) / SHIFT_UNITS["size"],
            np.abs(a["grey"] - b["grey"]) / SHIFT_UNITS["background"],
            np.hypot(a["cx"] - b["cx"], a["cy"] - b["cy"]) / SHIFT_UNITS["position"],
        ],
        1,
    )


def _changed(a: dict, b: dict) -> np.ndarray:
    """[n, 5] bool: which of colour/shape/size/background/position differ between two classifications."""
    cols = [a[k] != b[k] for k in world.ATTRIBUTE_NAMES]
    cols.append((np.abs(a["x"] - b["x"]) > 0.3) | (np.abs(a["y"] - b["y"]) > 0.3))
    return np.stack(cols, 1)


@torch.no_grad()
def channel_effects(
    gen,
    n: int = 16,
    alpha: float = 5.0,
    psi: float = 0.7,
    seed: int = 0,
    stats_samples: int = 2000,
    batch: int = 512,
    channels=None,
) -> list[dict]:
    """Per conv StyleSpace channel: what the pixel classifier sees change when the channel is set to
    mu +- alpha sigma (SPEC §3's perturbation) in n psi-truncated samples.

    Each record: layer, channel, valid (share of samples whose two edits are both valid shapes), rates
    (share of those samples where each of EDIT_ATTRIBUTES differs between the + and - edit) and shifts
    (the mean continuous change of each between the two edits in SHIFT_UNITS; shape: the flip rate).
    channels: only these (layer, channel) pairs (the same samples and statistics as the whole probe).
    """
    from shapes.classifier import classify

    g = torch.Generator().manual_seed(seed)
    mu, sigma = style_stats(gen, stats_samples, psi, rng=g)
    base = gen.styles(gen.truncate(gen.mapping(torch.randn(n, gen.z_dim, generator=g)), psi))  # n per layer
    jobs = [(l, c) for l in range(len(base)) if l not in gen.rgb_layers for c in range(base[l].shape[1])]
    if channels is not None:
        wanted = {(int(l), int(c)) for l, c in channels}
        if not wanted <= set(jobs):
            raise ValueError(f"not conv StyleSpace channels of this generator: {sorted(wanted - set(jobs))}")
        jobs = [j for j in jobs if j in wanted]
    records = []
    for start in range(0, len(jobs), max(1, batch // (2 * n))):
        chunk = jobs[start : start + max(1, batch // (2 * n))]
        styles = [s.repeat(2 * len(chunk), 1) for s in base]  # [(2 * len(chunk) * n), width]
        for j, (l, c) in enumerate(chunk):
            for k, sign in enumerate((1.0, -1.0)):
                rows = slice((2 * j + k) * n, (2 * j + k + 1) * n)
                styles[l][rows, c] = mu[l][c] + sign * alpha * sigma[l][c]
        pred = classify(gen.synthesize(styles))
        for j, (l, c) in enumerate(chunk):
            plus = {k: v[2 * j * n : (2 * j + 1) * n] for k, v in pred.items()}
            minus = {k: v[(2 * j + 1) * n : (2 * j + 2) * n] for k, v in pred.items()}
            ok = plus["valid"] & minus["valid"]
            rates = _changed(plus, minus)[ok].mean(0) if ok.any() else np.zeros(len(EDIT_ATTRIBUTES))
            shifts = _shifts(plus, minus)[ok].mean(0) if ok.any() else np.zeros(len(EDIT_ATTRIBUTES))
            records.append(
                dict(
                    layer=l,
                    channel=c,
                    valid=float(ok.mean()),
                    rates={a: float(r) for a, r in zip(EDIT_ATTRIBUTES, rates)},
                    shifts={a: float(r) for a, r in zip(EDIT_ATTRIBUTES, shifts)},
                )
            )
    return records


def _one_attribute_channels(records: list[dict], key: str, min_valid: float, stands_out) -> dict[str, list[dict]]:
    """Per attribute, the channels (valid in >= min_valid of samples) whose record[key] is largest for that
    attribute and for which stands_out(largest, largest of the others) holds; strongest first."""
    out = {a: [] for a in EDIT_ATTRIBUTES}
    for r in records:
        if r["valid"] < min_valid:
            continue
        best = max(r[key], key=r[key].get)
        others = max(v for a, v in r[key].items() if a != best)
        if stands_out(r[key][best], others):
            out[best].append(r)
    for a in out:
        out[a].sort(key=lambda r: -r[key][a])
    return out


def single_attribute_channels(
    records: list[dict], min_valid: float = 0.5, min_rate: float = 0.5, max_other: float = 0.1
) -> dict[str, list[dict]]:
    """Channels whose +- edit changes exactly one attribute: that attribute in >= min_rate of the valid
    samples, every other attribute in <= max_other; per attribute, strongest first."""
    return _one_attribute_channels(
        records, "rates", min_valid, lambda best, others: best >= min_rate and others <= max_other
    )


def dominant_attribute_channels(
    records: list[dict], min_valid: float = 0.5, min_shift: float = 0.2, max_ratio: float = 0.25
) -> dict[str, list[dict]]:
    """Channels whose +- edit moves one attribute by >= min_shift of its unit (SHIFT_UNITS; shape: flip
    rate) and every other by <= max_ratio of that: the continuous reading of "changes one attribute" (a
    channel can move a shape 2 px or shade its colour without flipping a class); per attribute, strongest first."""
    return _one_attribute_channels(
        records, "shifts", min_valid, lambda best, others: best >= min_shift and others <= max_ratio * best
    )
