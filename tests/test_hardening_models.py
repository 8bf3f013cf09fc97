"""Issue 9 items 11, 12, 13, 15: the query CLI defaults to the models an atlas records (safely), the CLIP
fingerprint covers the architecture, random CLIP weights are asked for, tags fail at once offline."""

import json
import logging
import shutil
import time

import h5py
import pytest
from click.testing import CliRunner
from helpers import WORLD_BUILD, query_error, reseal

import index
from models.errors import AtlasFormatError, CheckpointError
from query.cli import cli


@pytest.fixture(scope="module")
def world(shared_world):
    """The session's tiny world (conftest): copy the atlas before changing anything in it."""
    return shared_world


# ---------------------------------------------------------------- item 11
def test_edit_and_new_prompts_use_the_recorded_models(world, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["edit", "red", "--beta", "0.05", "-o", str(tmp_path / "e.png"), "--atlas", str(world["atlas"]), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"generator: {world['gen'].resolve()} (recorded in the atlas)" in result.stderr
    result = CliRunner().invoke(
        cli,
        ["direction", "a crimson blob", "--beta", "0.01", "--atlas", str(world["atlas"]), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"CLIP: {world['clip'].resolve()}" in result.stderr and "recorded in the atlas" in result.stderr


def test_a_recorded_model_that_is_gone_names_the_flag(world, tmp_path, capsys):
    root = tmp_path / "moved"
    shutil.copytree(world["root"], root)
    (root / "gen.pt").unlink()  # the atlas still records world["gen"]; pretend we are on another machine
    with h5py.File(root / "atlas" / "atlas.h5", "r+") as h5:
        models = json.loads(h5.attrs["models"])
        models["generator"] = str(root / "gen.pt")
        h5.attrs["models"] = json.dumps(models)
    reseal(root / "atlas")
    err = query_error(
        capsys, "edit", "red", "--beta", "0.05", "-o", str(tmp_path / "e.png"), "--atlas", str(root / "atlas")
    )
    assert "not on this machine" in err and "--generator" in err and str(root / "gen.pt") in err


def test_a_hub_tag_only_the_atlas_names_is_not_downloaded(world, tmp_path, monkeypatch):
    import models.clip as clip_module
    from models.clip import load_clip

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(clip_module.open_clip, "download_pretrained", no_network)
    monkeypatch.setattr(clip_module, "_hub_cache_file", lambda tag: None)
    monkeypatch.setattr(clip_module.Path, "is_file", lambda self: False)
    with pytest.raises(CheckpointError, match="does not download what only an atlas names"):
        clip_module._resolve_pretrained("ViT-B-32", "openai", allow_download=False)
    assert callable(load_clip)


def test_wrong_model_error_names_the_demo_and_the_fix(world, tmp_path, capsys):
    from models.stylegan2 import small_generator
    from pipeline import build_atlas

    out = tmp_path / "unrecorded"
    build_atlas(small_generator(seed=0, resolution=16, width=16), world["embedder"], out, **WORLD_BUILD)
    with h5py.File(out / "atlas.h5", "r+") as h5:
        h5.attrs["models"] = "{}"  # an atlas made before models were recorded
    reseal(out)
    err = query_error(
        capsys, "edit", "red", "--beta", "0.05", "-o", str(tmp_path / "e.png"), "--atlas", str(out), notes=True
    )  # after "generator: demo (the demo: the atlas records no generator)"
    assert "the demo" in err and "--generator" in err
    result = CliRunner().invoke(
        cli,
        [
            "edit",
            "red",
            "--beta",
            "0.05",
            "-o",
            str(tmp_path / "e.png"),
            "--atlas",
            str(out),
            "--no-check-fingerprints",
            "--generator",
            str(world["gen"]),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- item 12
def test_clip_fingerprint_covers_the_architecture(world, tmp_path):
    from helpers import tiny_clip_config

    from models.clip import load_clip

    plain = load_clip(tiny_clip_config(), seed=0)
    quick = load_clip({**tiny_clip_config(), "quick_gelu": True}, seed=0)
    quick.model.load_state_dict(plain.model.state_dict())  # the same weights, another activation
    assert index.fingerprint_embedder(quick, ["a {}."]) == index.fingerprint_embedder(plain, ["a {}."])
    data = index.read_atlas(world["atlas"])
    data.embedder_architecture = index.fingerprint.architecture_embedder(plain)
    data.embedder_fingerprint = index.fingerprint_embedder(plain, data.templates)
    index.check_fingerprints(data, embedder=plain)
    with pytest.raises(AtlasFormatError, match="architecture"):
        index.check_fingerprints(data, embedder=quick)
    data.embedder_architecture = ""  # an atlas written before architectures were recorded still opens
    index.check_fingerprints(data, embedder=plain)


def test_old_atlases_without_the_new_attributes_open(world, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(world["atlas"], out)
    with h5py.File(out / "atlas.h5", "r+") as h5:
        del h5.attrs["models"], h5.attrs["embedder_architecture"]
    manifest = json.loads((out / "MANIFEST.json").read_text())
    manifest.pop("sha256"), manifest.pop("models")
    manifest["files"]["atlas.h5"] = (out / "atlas.h5").stat().st_size
    (out / "MANIFEST.json").write_text(json.dumps(manifest))
    data = index.read_atlas(out, embedder=world["embedder"])
    assert data.models == {} and data.embedder_architecture == ""


# ---------------------------------------------------------------- item 13
def test_named_clip_without_weights_is_refused_unless_asked(world):
    from models.clip import load_clip

    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="--random-weights"):
        load_clip("ViT-B-32", random_weights=False)
    with pytest.raises(CheckpointError, match="--pretrained"):
        load_clip(str(world["clip"]), random_weights=False)
    assert time.perf_counter() - t0 < 5  # refused before any model is built


@pytest.mark.slow
def test_no_false_random_weights_warning(caplog):
    from models.clip import load_clip

    with caplog.at_level(logging.WARNING):
        load_clip("ViT-B-32", random_weights=True)
    assert not any("initialized randomly" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- item 15
def test_a_tag_offline_fails_at_once_with_a_whole_message(monkeypatch):
    import models.clip as clip_module

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(clip_module, "network_reachable", lambda *a, **k: False)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted offline")

    monkeypatch.setattr(clip_module.open_clip, "download_pretrained", no_download)
    monkeypatch.setattr(clip_module.Path, "is_file", lambda self: False)  # nothing in ~/.cache/clip
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        clip_module._resolve_pretrained("ViT-B-32", "openai")
    assert time.perf_counter() - t0 < 5
    message = str(info.value)
    assert "offline" in message and message.endswith(".") and "--pretrained" in message


def test_long_errors_are_cut_at_a_word():
    from models.clip import _short

    text = _short(RuntimeError("word " * 100))
    assert text.endswith(" …") and "wor …" not in text and len(text) < 170
