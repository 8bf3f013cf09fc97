"""Why a StyleSpace channel is not strict: the strict probe's samples, one by one (issue 17's diagnosis).

    .venv/bin/python benchmarks/channel_diagnosis.py --channel 3:88                     # the size channel
    .venv/bin/python benchmarks/channel_diagnosis.py --channel 9:25 --twin background   # the background one
    .venv/bin/python benchmarks/channel_diagnosis.py --channel 3:88 --generator out/g.pt --json

Per sample of the probe (shapes.probe.channel_effects: the same 16 psi-0.7 samples and statistics), what the
pixel classifier reads before the push and with the channel at mu - 5 sigma and mu + 5 sigma (shape, size,
radius, background grey, border spread) and, for an invalid image, which validity tests it fails
(shapes.classifier.failed_tests). The channel's probe record sums it up: both images valid in `valid` of the
samples, each attribute flipped in `rates` of those.

--twin size|background: also push the channel with the styles of --twin-layers (default: the channel's own
layer) taken from the sample's twin whose class the push shows: the same z with that attribute's z coordinate
of the other sign (attributes_from_z). Where those pushes are valid and the sample's own are not, the styles
of those layers still tell the old class, and the image shows both: the attribute is spread over them.

    .venv/bin/python benchmarks/channel_diagnosis.py --channel 9:25 --twin background --twin-layers 9,10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.demo import DEMO_DIR  # noqa: E402
from models.errors import CheckpointError  # noqa: E402
from models.stylegan2 import load_generator  # noqa: E402
from shapes import style_stats, world  # noqa: E402
from shapes.classifier import classify, failed_tests  # noqa: E402
from shapes.probe import EDIT_ATTRIBUTES, _changed  # noqa: E402
from shapes.train_generator import Z_BACKGROUND, Z_SIZE  # noqa: E402

TWIN_COORDINATE = dict(size=Z_SIZE, background=Z_BACKGROUND)


def _pushed(gen, styles: list, layer: int, channel: int, value: torch.Tensor) -> torch.Tensor:
    out = [s.clone() for s in styles]
    out[layer][:, channel] = value
    return gen.synthesize(out)


def _reading(c: dict, fails: list[list[str]], i: int) -> dict:
    """Sample i of a classify() reading, with the validity tests it fails (failed_tests of the reading)."""
    return dict(
        shape=world.SHAPES[c["shape"][i]],
        size=world.SIZES[c["size"][i]],
        radius=round(float(c["radius"][i]), 1),
        grey=round(float(c["grey"][i]), 2),
        border_std=round(float(c["border_std"][i]), 3),
        valid=bool(c["valid"][i]),
        fails=fails[i],
    )


@torch.no_grad()
def diagnose(
    gen,
    layer: int,
    channel: int,
    twin: str = "",
    twin_layers: tuple[int, ...] = (),
    n: int = 16,
    alpha: float = 5.0,
    psi: float = 0.7,
) -> dict:
    """The probe's samples at mu -+ alpha sigma of (layer, channel), read one by one (see the module docstring);
    twin_layers: the style layers taken from the twin (default: `layer`)."""
    records = gen.style_layers
    if not 0 <= layer < len(records) or records[layer]["kind"] != "conv" or not 0 <= channel < records[layer]["width"]:
        raise ValueError(f"({layer}, {channel}) is not a conv StyleSpace channel of this generator")
    twin_layers = tuple(twin_layers) or (layer,)
    if not all(0 <= t < len(records) for t in twin_layers):
        raise ValueError(f"twin layers {twin_layers} must be style layers 0..{len(records) - 1}")
    g = torch.Generator().manual_seed(0)  # channel_effects' draws, in its order
    mu, sigma = style_stats(gen, 2000, psi, rng=g)
    z = torch.randn(n, gen.z_dim, generator=g)
    base = gen.styles(gen.truncate(gen.mapping(z), psi))
    before = classify(gen.synthesize(base))
    value = {sign: mu[layer][channel] + sign * alpha * sigma[layer][channel] for sign in (-1, 1)}
    sides = {sign: classify(_pushed(gen, base, layer, channel, v)) for sign, v in value.items()}
    fails = {key: failed_tests(c) for key, c in (("before", before), *sides.items())}
    ok = sides[-1]["valid"] & sides[1]["valid"]
    rates = _changed(sides[-1], sides[1])[ok].mean(0) if ok.any() else np.zeros(len(EDIT_ATTRIBUTES))
    twins = {}
    if twin:
        coordinate = TWIN_COORDINATE[twin]
        for cls in (0, 1):  # the twin whose z asks for class cls of the attribute
            zt = z.clone()
            zt[:, coordinate] = zt[:, coordinate].abs() * (1 if cls else -1)
            twins[cls] = gen.styles(gen.truncate(gen.mapping(zt), psi))
    samples = []
    for i in range(n):
        row = dict(sample=i, before=_reading(before, fails["before"], i))
        for sign, c in sides.items():
            side = _reading(c, fails[sign], i)
            if twin:
                shown = int(c[twin][i])  # the class the push shows: twin_layers from that twin
                styles = [(twins[shown] if t in twin_layers else base)[t][i : i + 1] for t in range(len(base))]
                pushed = _pushed(gen, styles, layer, channel, value[sign])
                side["valid_with_twin_layer"] = bool(classify(pushed)["valid"][0])
            row["minus" if sign < 0 else "plus"] = side
        samples.append(row)
    twin_valid = (
        float(np.mean([s["minus"]["valid_with_twin_layer"] and s["plus"]["valid_with_twin_layer"] for s in samples]))
        if twin
        else None
    )
    return dict(
        twin_valid=twin_valid,
        layer=layer,
        channel=channel,
        twin_layers=list(twin_layers) if twin else [],
        valid=float(ok.mean()),
        rates={a: float(r) for a, r in zip(EDIT_ATTRIBUTES, rates)},
        samples=samples,
    )


def markdown(d: dict, twin: str) -> str:
    rates = ", ".join(f"{a} {r:.2f}" for a, r in d["rates"].items())
    lines = [
        f"## ({d['layer']}, {d['channel']}): both images valid in {d['valid']:.0%} of samples; "
        f"flips among those: {rates}"
        + (f"; with layers {d['twin_layers']} from the twin: both valid in {d['twin_valid']:.0%}" if twin else ""),
        "",
        "| sample | before | -5 sigma | +5 sigma |"
        + (f" valid with layers {', '.join(map(str, d['twin_layers']))} from the twin (-/+) |" if twin else ""),
        "|---|---|---|---|" + ("---|" if twin else ""),
    ]

    def cell(r: dict) -> str:
        text = f"{r['size']} {r['shape']} r {r['radius']}, grey {r['grey']}, border {r['border_std']}"
        return text + (", valid" if r["valid"] else f", invalid: {' '.join(r['fails'])}")

    for s in d["samples"]:
        line = f"| {s['sample']} | {cell(s['before'])} | {cell(s['minus'])} | {cell(s['plus'])} |"
        if twin:
            line += f" {s['minus']['valid_with_twin_layer']} / {s['plus']['valid_with_twin_layer']} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channel", required=True, help="layer:channel, e.g. 3:88")
    ap.add_argument("--generator", default=str(DEMO_DIR / "generator.pt"))
    ap.add_argument("--twin", choices=sorted(TWIN_COORDINATE), default="")
    ap.add_argument("--twin-layers", default="", help="style layers from the twin, e.g. 9,10 (default: the channel's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        layer, channel = (int(v) for v in args.channel.split(":"))
    except ValueError:
        ap.error(f"--channel takes layer:channel, e.g. 3:88, got {args.channel!r}")
    twin_layers = tuple(int(v) for v in args.twin_layers.split(",")) if args.twin_layers else ()
    try:
        d = diagnose(load_generator(args.generator), layer, channel, args.twin, twin_layers)
    except (ValueError, CheckpointError) as e:  # a bad channel or layer, a missing or wrong generator file
        ap.error(str(e))
    print(json.dumps(d, indent=1) if args.json else markdown(d, args.twin))


if __name__ == "__main__":
    main()
