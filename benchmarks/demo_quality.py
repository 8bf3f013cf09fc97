"""Quality tables of the shapes world and its shipped models (the numbers in models/demo/MODEL_CARD.md).

    .venv/bin/python benchmarks/demo_quality.py            # markdown tables, ~2-4 minutes on 2 CPU cores
    .venv/bin/python benchmarks/demo_quality.py --json
    .venv/bin/python benchmarks/demo_quality.py --only families --generator out/g.pt   # the per-family tables

The per-family tables (issue 17): strict single-attribute channels and the best channel per attribute family,
and global-direction edits through an atlas (M = 8, auto beta, alpha 4, 32 samples), one prompt per family;
the atlas is --atlas, built there first when it holds none for this generator (a few minutes).

Baselines measured in the same run: the renderer one image at a time, an untrained CLIP and an untrained
generator of the same architectures (seed 0), and chance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.clip import load_clip  # noqa: E402
from models.demo import DEMO_DIR, NEUTRAL  # noqa: E402
from models.stylegan2 import StyleGAN2Generator, load_generator  # noqa: E402
from shapes import classifier, world  # noqa: E402
from shapes.evaluate import generator_quality, generator_samples, held_out, zero_shot  # noqa: E402
from shapes.families import PROBE_SETS, best_channels, ends_by_cell, family_edits, recheck_best  # noqa: E402
from shapes.probe import (  # noqa: E402
    EDIT_ATTRIBUTES,
    SHIFT_UNITS,
    channel_effects,
    dominant_attribute_channels,
    single_attribute_channels,
)

ENDS_FAMILIES = ("colour", "shape", "size", "background")  # whose best channel's ends are read per cell of z
CHANCE = dict(colour=1 / len(world.COLOURS), shape=1 / len(world.SHAPES), size=1 / 2, background=1 / 2)


def renderer_speed(n: int = 5000) -> dict:
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    world.sample(n, rng)
    batched = n / (time.perf_counter() - t)
    attrs = world.sample_attributes(300, rng)
    t = time.perf_counter()
    for i in range(300):
        world.render(world.subset(attrs, slice(i, i + 1)))
    single = 300 / (time.perf_counter() - t)
    return dict(batched_images_per_s=batched, one_at_a_time_images_per_s=single)


def untrained_generator(seed: int = 0) -> StyleGAN2Generator:
    demo = load_generator("demo")
    gen = StyleGAN2Generator(demo.resolution, demo.w_dim, demo.n_mlp, channels=demo.channels, seed=seed)
    gen.update_mean_w(n=10_000, seed=seed)
    return gen.eval()


def zero_shot_on_samples(embedder, images: torch.Tensor) -> dict:
    """Zero-shot accuracy on generator samples, with the pixel classifier's reading of the valid ones as truth."""
    pred = classifier.classify(images)
    ok = pred["valid"]
    return zero_shot(embedder, images[torch.from_numpy(ok)], {k: v[ok] for k, v in pred.items()})


def open_atlas(gen, clip, path: str | None):
    """The atlas at `path` if it was built with these models, else one built there (M = 8, README quickstart)."""
    from index import fingerprint_embedder, fingerprint_generator
    from models.errors import AtlasError
    from models.text import load_templates
    from pipeline import build_atlas
    from query import Atlas

    if path is None:
        name = f"{fingerprint_generator(gen)[:12]}-{fingerprint_embedder(clip, load_templates())[:12]}"
        path = str(Path(__file__).resolve().parents[1] / "out" / "demo_quality_atlas" / name)
    try:
        return Atlas.open(path, generator=gen, embedder=clip)
    except AtlasError:
        build_atlas(
            gen, clip, path, num_images=8, num_samples=20000, vocabulary="demo", neutral=NEUTRAL, progress=False
        )
        return Atlas.open(path, generator=gen, embedder=clip)


def families(gen, channel_samples: int, atlas: str | None, records=None, probe_sets: int = PROBE_SETS) -> dict:
    """The per-family tables: best channels from the strict probe, re-read on probe_sets sample sets, and atlas
    edits (32 samples, alpha 4, auto beta)."""
    t = time.perf_counter()
    records = records if records is not None else channel_effects(gen, n=channel_samples)
    out = dict(channels=best_channels(records), probe_seconds=time.perf_counter() - t)
    if probe_sets > 1:
        out["robustness"] = recheck_best(gen, out["channels"], sets=probe_sets, n=channel_samples)
    out["ends"] = {
        family: dict(
            layer=c["best"]["layer"],
            channel=c["best"]["channel"],
            cells=ends_by_cell(gen, c["best"]["layer"], c["best"]["channel"]),
        )
        for family, c in out["channels"].items()
        if family in ENDS_FAMILIES and c["best"] is not None
    }
    t = time.perf_counter()
    out["edits"] = family_edits(open_atlas(gen, load_clip("demo"), atlas), n=32, alpha=4.0, beta="auto")
    out["edit_seconds"] = time.perf_counter() - t
    out["load"] = os.getloadavg()
    return out


def run(
    n: int,
    channel_samples: int,
    generator: str = "demo",
    atlas: str | None = None,
    only: str = "all",
    probe_sets: int = PROBE_SETS,
) -> dict:
    torch.set_num_threads(2)
    out: dict = dict(n=n, generator=generator, channel_samples=channel_samples)
    if only == "families":
        gen = load_generator(generator)
        out["generator"] = {f"psi={psi}": generator_quality(gen, n, psi, seed=0) for psi in (0.7, 1.0)}
        _, samples = generator_samples(gen, n, psi=0.7, seed=0)
        out["zero_shot_on_samples"] = zero_shot_on_samples(load_clip("demo"), samples)
        out["families"] = families(gen, channel_samples, atlas, probe_sets=probe_sets)
        return out
    out["renderer"] = renderer_speed()
    images, attrs = held_out(n)
    out["classifier"] = classifier.accuracy(classifier.classify(images), attrs)
    clip = load_clip("demo")
    random_clip = load_clip(str(DEMO_DIR / "clip_config.json"), seed=0)
    out["zero_shot"] = dict(demo=zero_shot(clip, images, attrs), untrained=zero_shot(random_clip, images, attrs))
    gen = load_generator(generator)
    _, samples = generator_samples(gen, n, psi=0.7, seed=0)
    out["zero_shot_on_samples"] = zero_shot_on_samples(clip, samples)
    base = untrained_generator()
    out["generator"] = {f"demo psi={psi}": generator_quality(gen, n, psi, seed=0) for psi in (0.7, 1.0)}
    out["generator"]["untrained psi=0.7"] = generator_quality(base, n, 0.7, seed=0)
    t = time.perf_counter()
    records = channel_effects(gen, n=channel_samples)
    single, dominant = single_attribute_channels(records), dominant_attribute_channels(records)
    usable = [r for r in records if r["valid"] >= 0.5]
    out["stylespace"] = dict(
        conv_channels=len(records),
        seconds=time.perf_counter() - t,
        single_attribute={a: len(v) for a, v in single.items()},
        top={a: [(r["layer"], r["channel"], round(r["rates"][a], 2)) for r in v[:3]] for a, v in single.items()},
        dominant={a: len(v) for a, v in dominant.items()},
        dominant_top={
            a: [(r["layer"], r["channel"], round(r["shifts"][a], 2)) for r in v[:3]] for a, v in dominant.items()
        },
        # per attribute, the channel that moves it most, with what else it moves (whether or not it dominates)
        strongest={a: max(usable, key=lambda r: r["shifts"][a]) if usable else None for a in EDIT_ATTRIBUTES},
    )
    out["families"] = families(gen, channel_samples, atlas, records, probe_sets)
    return out


def print_family_tables(r: dict) -> None:
    """Issue 17's tables: per attribute family, strict channels and the best one; atlas edits per family."""
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    f = r["families"]
    print(
        "\n### Per attribute family: strict single-attribute channels (+-5 sigma; flips its attribute in >= 50 % "
        "of samples, every other in <= 10 %)\n\nBest: the strongest strict channel, else (not strict) the one whose "
        "flip rate most exceeds its largest side effect, else the one whose continuous shift (SHIFT_UNITS) most "
        "exceeds its largest other shift.\n"
    )
    print(
        "| family | strict channels | best (layer, channel) | flip rate | shift (units) | side effects (flips): "
        + " / ".join(a for a in EDIT_ATTRIBUTES)
        + " |\n|---|---|---|---|---|---|"
    )
    for a in EDIT_ATTRIBUTES:
        c = f["channels"][a]
        b = c["best"]
        if b is None:
            print(f"| {a} | 0 | - | - | - | - |")
            continue
        side = " / ".join("-" if o == a else f"{b['side_effects'][o]:.2f}" for o in EDIT_ATTRIBUTES)
        print(
            f"| {a} | {c['single_attribute']} | ({b['layer']}, {b['channel']}){'' if b['strict'] else ' not strict'} "
            f"| {b['flip_rate']:.2f} | {b.get('shift', float('nan')):.2f} | {side} |"
        )
    if "robustness" in f:
        rb = f["robustness"]
        sets = next(iter(rb.values()))["sets"] if rb else 0
        print(
            f"\n### The best channels on {sets} sample sets (seeds 0-{sets - 1}, {r.get('channel_samples', 16)} "
            "samples each; seed 0 is the probe's own set): in how many sets each is strict, and its rates pooled "
            "over all valid samples\n"
        )
        print(
            "| family | channel | strict in | strict pooled | pooled flip rate | pooled side effects: "
            + " / ".join(EDIT_ATTRIBUTES)
            + " | valid |\n|---|---|---|---|---|---|---|"
        )
        for a, b in rb.items():
            side = " / ".join("-" if o == a else f"{b['side_effects'][o]:.2f}" for o in EDIT_ATTRIBUTES)
            print(
                f"| {a} | ({b['layer']}, {b['channel']}) | {b['strict_sets']} of {b['sets']} | "
                f"{'yes' if b['strict_pooled'] else 'no'} | {b['flip_rate']:.2f} | {side} | {100 * b['valid']:.0f} % |"
            )
    if f.get("ends"):
        print_ends_table(f["ends"])
    print(
        f"\n### Global-direction edits through the atlas (M = 8, auto beta, alpha 4, 32 fresh samples without "
        f"the prompt's value; {f['edit_seconds']:.0f} s, load {f['load'][0]:.1f})\n"
    )
    print(
        "| family | prompt | channels | reached | grew / lightened / redder / moved | shape kept | colour kept "
        "| size kept | background kept | position kept | valid after |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for a, e in f["edits"].items():
        if "error" in e:
            print(f"| {a} | {e['prompt']} | not measured: {e['error']} |" + " |" * 8)
            continue
        change = next((pct(e[k]) for k in ("grew", "lightened", "redder", "moved_left") if k in e), "-")
        kept = " | ".join(pct(e[f"kept_{o}"]) if f"kept_{o}" in e else "-" for o in EDIT_ATTRIBUTES)
        print(
            f"| {a} | {e['prompt']} | {e['channels']} | {pct(e['reached'])} | {change} | {kept} | "
            f"{pct(e['valid_after'])} |"
        )


def print_ends_table(ends: dict) -> None:
    """Per (size, shape) cell of z: how often each family's best channel keeps the shape between its +-5 sigma
    ends (families.ends_by_cell), and for the size channel which end draws the shape z asked for."""
    pct = lambda v: f"{100 * v:.0f} %"  # noqa: E731
    cells = list(next(iter(ends.values()))["cells"])
    print(
        "\n### Where the side effects sit: per cell of z, the share of samples whose shape is the same at both "
        "ends of each family's best channel (+-5 sigma, samples of seed 100 valid at both ends)"
        + (", and for the size channel the share whose + / - end draws the shape z asked for" if "size" in ends else "")
        + "\n"
    )
    heads = [f"{a} ({e['layer']}, {e['channel']})" for a, e in ends.items()]
    extra = ["size: + / - end as z"] if "size" in ends else []
    print("| cell of z | " + " | ".join(heads + extra) + " |\n|---|" + "---|" * (len(heads) + len(extra)))
    for cell in cells:
        row = []
        for e in ends.values():
            c = e["cells"][cell]
            row.append("-" if c is None else f"{pct(c['same'])} ({c['n']})")
        if extra:
            c = ends["size"]["cells"][cell]
            row.append("-" if c is None else f"{pct(c['plus'])} / {pct(c['minus'])}")
        print(f"| {cell} | " + " | ".join(row) + " |")


def print_generator_table(r: dict) -> None:
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    print("| generator | valid | shape as z | colour as z | size as z | background as z |\n|---|---|---|---|---|---|")
    for name, g in r["generator"].items():
        print(
            f"| {name} | {pct(g['valid'])} | {pct(g['shape_as_z'])} | {pct(g['colour_as_z'])} | "
            f"{pct(g['size_as_z'])} | {pct(g['background_as_z'])} |"
        )
    cells = {name: g["shape_as_z_cells"] for name, g in r["generator"].items() if "shape_as_z_cells" in g}
    if cells:
        names = list(next(iter(cells.values())))
        print("\nShape as z per cell of z (valid samples):\n")
        print("| generator | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
        for name, c in cells.items():
            print(f"| {name} | " + " | ".join("-" if c[k] is None else pct(c[k]) for k in names) + " |")


def print_tables(r: dict) -> None:
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    if "renderer" not in r:  # --only families
        print_generator_table(r)
        z = r["zero_shot_on_samples"]
        print(
            f"\nCLIP on valid psi-0.7 samples: colour {pct(z['colour'])}, shape {pct(z['shape'])}, size "
            f"{pct(z['size'])}, background {pct(z['background'])}"
        )
        print_family_tables(r)
        return
    print(
        f"### Renderer (CPU)\n\n| | images/s |\n|---|---|\n"
        f"| batched (`world.sample(5000)`) | {r['renderer']['batched_images_per_s']:,.0f} |\n"
        f"| baseline: one image per call | {r['renderer']['one_at_a_time_images_per_s']:,.0f} |\n"
    )
    c = r["classifier"]
    print(
        f"### Pixel classifier on {r['n']} held-out procedural images\n\n| shape | colour | size | background | "
        f"valid |\n|---|---|---|---|---|\n| {pct(c['shape'])} | {pct(c['colour'])} | {pct(c['size'])} | "
        f"{pct(c['background'])} | {pct(c['valid'])} |\n"
    )
    print(f"### Zero-shot CLIP accuracy ({r['n']} held-out procedural images, 79 ImageNet templates averaged)\n")
    print("| model | colour | shape | size | background |\n|---|---|---|---|---|")
    rows = [
        ("demo CLIP", r["zero_shot"]["demo"]),
        ("baseline: untrained, same config", r["zero_shot"]["untrained"]),
        ("chance", CHANCE),
        ("demo CLIP on valid generator samples (psi 0.7)", r["zero_shot_on_samples"]),
    ]
    for name, z in rows:
        print(f"| {name} | {pct(z['colour'])} | {pct(z['shape'])} | {pct(z['size'])} | {pct(z['background'])} |")
    print(f"\n### Generator samples ({r['n']} z, seed 0, noise const), read by the pixel classifier\n")
    print_generator_table(r)
    s = r["stylespace"]
    print(
        f"\n### Single-attribute StyleSpace channels ({s['conv_channels']} conv channels, each set to mu +- 5 "
        f"sigma in psi-0.7 samples; {s['seconds']:.0f} s)\n"
    )
    print("| attribute | channels | strongest (layer, channel, share of samples changed) |\n|---|---|---|")
    for a in EDIT_ATTRIBUTES:
        top = ", ".join(f"({l}, {ch}, {rate})" for l, ch, rate in s["top"][a]) or "-"
        print(f"| {a} | {s['single_attribute'][a]} | {top} |")
    u = SHIFT_UNITS
    print(
        f"\n### Continuous shifts of the same edits (units: colour {u['colour']:.2f} RGB, background "
        f"{u['background']:.2f} grey, size {u['size']:.2f} px, position {u['position']:.0f} px; shape: flip "
        f"rate)\n\nA channel dominates an attribute when it moves it by >= 0.2 units and every other by <= a "
        f"quarter of that.\n"
    )
    print(
        "| attribute | dominant channels | strongest dominant (layer, channel, shift) | channel moving it most: "
        "(layer, channel) shape / colour / size / background / position |\n|---|---|---|---|"
    )
    for a in EDIT_ATTRIBUTES:
        top = ", ".join(f"({l}, {ch}, {v})" for l, ch, v in s["dominant_top"][a]) or "-"
        rec = s["strongest"][a]  # not `r`: that is the result, which print_family_tables reads below
        most = (
            f"({rec['layer']}, {rec['channel']}) " + " / ".join(f"{rec['shifts'][b]:.2f}" for b in EDIT_ATTRIBUTES)
            if rec
            else "-"
        )
        print(f"| {a} | {s['dominant'][a]} | {top} | {most} |")
    print_family_tables(r)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="held-out images and generator samples")
    parser.add_argument("--channel-samples", type=int, default=16, help="samples per channel edit")
    parser.add_argument("--generator", default="demo", help='"demo" or a generator.pt')
    parser.add_argument("--atlas", default=None, help="atlas folder for the edits (built there if missing)")
    parser.add_argument("--only", choices=("all", "families"), default="all")
    parser.add_argument(
        "--probe-sets",
        type=int,
        default=PROBE_SETS,
        help="sample sets (seeds 0, 1, ...) the best channel of each family is re-read on (1: the probe's own only)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.probe_sets < 1:
        parser.error("--probe-sets must be at least 1")
    result = run(args.n, args.channel_samples, args.generator, args.atlas, args.only, args.probe_sets)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_tables(result)


if __name__ == "__main__":
    main()
