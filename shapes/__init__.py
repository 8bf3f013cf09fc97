"""The shapes world: a procedural 32x32 image world, and how the demo models were trained on it.

`world` renders images with known attributes and captions, `classifier` reads the attributes back from
pixels, `judge` scores edits with it; `train_generator`, `train_clip` and `identity` write the shipped
files under `models/demo/` (see its MODEL_CARD.md), `evaluate` and `make_grid` measure and draw them.
"""

import argparse
import contextlib
import dataclasses

from models.errors import AtlasError


def config_from_args(config_class, description: str, argv=None):
    """A trainer's config dataclass from the command line: one --flag per field, typed and defaulted like the
    field (int, float and str fields; a bool field is --flag / --no-flag)."""
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(config_class):
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default)
    return config_class(**vars(parser.parse_args(argv)))


@contextlib.contextmanager
def one_line_errors():
    """A trainer's command line: bad input (ValueError: a bad option such as a shape, layer or target name;
    AtlasError: an unreadable or wrong model file) ends the run with one 'error: ...' line, not a traceback."""
    try:
        yield
    except (ValueError, AtlasError) as e:
        raise SystemExit(f"error: {e}") from None


@contextlib.contextmanager
def torch_threads(n: int):
    """Runs the block with n torch threads and gives the caller's count back afterwards (trainers set their own)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def style_stats(gen, n: int = 2000, psi: float = 0.7, seed: int = 0, rng=None):
    """Per style layer, the mean and std [C] of its styles over n psi-truncated samples: the statistics the
    strict probe pushes channels by (probe.channel_effects), stage 5's far pushes use (train_generator) and
    the channel figure's strips are drawn in. z: n rows of randn from `rng` (a torch.Generator), or from one
    seeded with seed."""
    import torch

    g = rng if rng is not None else torch.Generator().manual_seed(seed)
    with torch.no_grad():
        styles = gen.styles(gen.truncate(gen.mapping(torch.randn(n, gen.z_dim, generator=g)), psi))
    return [s.mean(0) for s in styles], [s.std(0) for s in styles]
