"""A tiny real atlas for the hardening tests: a seeded small StyleGAN2 + tiny CLIP saved as files."""

import json

VOCAB = ["red", "green", "blue", "circle", "square", "dark", "light", "shape"]
TEMPLATES = ["a photo of a {}.", "a {} thing."]


_BUILT = {}


def shared_world(tmp_path_factory):
    """One world per test session (tests copy the atlas before changing anything in it)."""
    if "world" not in _BUILT:
        _BUILT["world"] = build_world(tmp_path_factory.mktemp("hardening_world"))
    return _BUILT["world"]


def build_world(root):
    """(atlas dir, generator checkpoint, CLIP config json, the models) for one small build into `root`."""
    from conftest import tiny_clip_config

    from models.clip import load_clip
    from models.stylegan2 import save_generator, small_generator
    from pipeline import build_atlas

    gen = small_generator(seed=0, resolution=16, width=16)
    save_generator(gen, root / "gen.pt")
    clip_cfg = root / "tiny_clip.json"
    clip_cfg.write_text(json.dumps(tiny_clip_config()))
    embedder = load_clip(str(clip_cfg))  # random weights: a library call may ask for them
    gen.source = str(root / "gen.pt")  # what load_generator would record
    build_atlas(
        gen,
        embedder,
        root / "atlas",
        num_images=2,
        num_samples=200,
        vocabulary=VOCAB,
        templates=TEMPLATES,
        neutral="shape",
        progress=False,
    )
    return dict(root=root, atlas=root / "atlas", gen=root / "gen.pt", clip=clip_cfg, generator=gen, embedder=embedder)


def query_error(capsys, *args, notes: bool = False) -> str:
    """Run the query CLI expecting exit 2 with a one-line error (after `notes` lines such as 'generator: ...')."""
    import pytest

    from query.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and (notes or len(err.splitlines()) == 1), err
    return err.splitlines()[-1]


def reseal(atlas) -> None:
    """Rewrite the manifest's sizes and hashes, as a careful forger would (so only the content checks remain)."""
    from index.verify import describe_files

    manifest = json.loads((atlas / "MANIFEST.json").read_text())
    manifest["files"], manifest["sha256"] = describe_files(atlas, list(manifest["files"]))
    (atlas / "MANIFEST.json").write_text(json.dumps(manifest))
