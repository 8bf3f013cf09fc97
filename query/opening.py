"""Opening an atlas with the models it was built with, loaded lazily (the query CLI and the web page share it).

A model the caller does not name is the one the atlas records (read through the same safe loaders; a CLIP tag
it names is only read from the local cache, never downloaded), else the demo. Each loaded model is
fingerprint-checked against the atlas, and the file used is said on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path


def recorded(atlas, kind: str):
    """The model source the atlas records for `kind` (generator / clip / pretrained), else None."""
    models = getattr(atlas.data, "models", None) or {}
    value = models.get(kind) if isinstance(models, dict) else None
    return value if isinstance(value, str) and value else None


def from_atlas(atlas, kind: str, flag: str, default="demo"):
    """A recorded model file that must exist here (an atlas may come from another machine), else `default`."""
    from models.errors import CheckpointError

    value = recorded(atlas, kind)
    if value is None:
        return default
    if value != "demo" and (Path(value).is_absolute() or value.endswith(".json")) and not Path(value).is_file():
        raise CheckpointError(
            f"atlas {atlas.data.path} was built with {kind} {value}, which is not on this machine; "
            f"pass {flag} PATH (the file it was built with)."
        )
    return value


def _checked(atlas, opts: dict, kind: str, model, what: str):
    """Fingerprint-check a lazily loaded model, naming what was loaded and the flag that changes it."""
    if opts.get("no_check_fingerprints"):
        return model
    import index
    from models.errors import AtlasFormatError

    try:
        index.check_fingerprints(atlas.data, **{kind: model})
    except AtlasFormatError as exc:
        flag = "--generator" if kind == "generator" else "--clip/--pretrained"
        raise AtlasFormatError(
            f"{str(exc).rstrip('.')}. Loaded {what}; pass {flag} with the model the atlas was "
            "built with (or --no-check-fingerprints)."
        ) from None
    return model


def open_atlas(opts: dict):
    """Atlas.open with lazily loaded models: the generator for edits, CLIP for prompts outside the vocabulary.

    A model not given on the command line is the one the atlas records (loaded through the same safe loaders;
    a CLIP tag it names is only read from the local cache, never downloaded), else the demo; the file used is
    printed on stderr.
    """
    from models.device import resolve_device
    from query.atlas import Atlas

    holder = {}

    def load_generator():
        from models.stylegan2 import load_generator as load

        atlas = holder["atlas"]
        given = opts["generator"]
        path = given or from_atlas(atlas, "generator", "--generator")
        why = (
            "--generator"
            if given
            else (
                "recorded in the atlas" if recorded(atlas, "generator") else "the demo: the atlas records no generator"
            )
        )
        gen = load(path, device=resolve_device(opts["device"]))
        if not given:  # say which file the atlas led us to
            print(f"generator: {getattr(gen, 'source', path)} ({why})", file=sys.stderr)
        return _checked(atlas, opts, "generator", gen, f"generator {path} ({why})")

    def load_embedder():
        from models.clip import load_clip

        atlas = holder["atlas"]
        given = opts["clip"] or opts["pretrained"]
        if given:
            name, pretrained, why = opts["clip"] or from_atlas(atlas, "clip", "--clip"), opts["pretrained"], "given"
        else:
            name = from_atlas(atlas, "clip", "--clip")
            pretrained = from_atlas(atlas, "pretrained", "--pretrained", default=None)
            why = "recorded in the atlas" if recorded(atlas, "clip") else "the demo: the atlas records no CLIP"
        embedder = load_clip(name, pretrained, device=resolve_device(opts["device"]), allow_download=bool(given))
        if not given:
            print(
                f"CLIP: {name}, weights {pretrained or ('demo' if name == 'demo' else 'random')} ({why})",
                file=sys.stderr,
            )
        return _checked(atlas, opts, "embedder", embedder, f"CLIP {name} ({why})")

    holder["atlas"] = Atlas.open(
        opts["atlas"], load_generator=load_generator, load_embedder=load_embedder, check_fingerprints=False
    )  # the loaders check, naming what they loaded
    holder["atlas"].faiss_device = opts["device"]
    return holder["atlas"]
