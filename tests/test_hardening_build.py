"""Issue 9 items 2, 3, 6, 7, 10, 11, 13, 14, 16 on the build side: builds write only into their own folders and
delete only what they wrote, NaN never reaches a chunk, bad phrases fail at planning, reruns repair, one build
at a time, and the atlas remembers its models."""

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import WORLD_BUILD, cli_error

import index
from index.work import chunk_path, plan_path, work_dir
from models.errors import AtlasError
from pipeline import build_atlas, run_build
from pipeline.cli import main as build_main

SMALL = WORLD_BUILD  # the shared world's build settings: a build here equals its atlas


def build_cli_error(capsys, *args):
    """build_index.py exits 2 with a one-line error (after notes such as 'generator: ...'); returns it."""
    return cli_error(build_main, capsys, *args, notes=True)


@pytest.fixture(scope="module")
def world(shared_world):
    """The session's tiny world (conftest): copy the atlas before changing anything in it."""
    return shared_world


def cli_models(world):
    return [
        "--generator",
        str(world["gen"]),
        "--clip",
        str(world["clip"]),
        "--random-weights",
        "--neutral",
        "shape",
        "--num-images",
        "2",
        "--num-samples",
        "200",
        "--device",
        "cpu",
    ]


# ---------------------------------------------------------------- item 2: other people's folders
def test_build_refuses_a_foreign_folder_and_deletes_nothing(world, tmp_path):
    out = tmp_path / "mine"
    (out / "work").mkdir(parents=True)
    (out / "work" / "thesis.tex").write_text("years of work")
    (out / ".tmp-precious").write_text("keep me")
    with pytest.raises(AtlasError, match="other files"):
        build_atlas(world["generator"], world["embedder"], out, **SMALL)
    assert (out / "work" / "thesis.tex").read_text() == "years of work"
    assert (out / ".tmp-precious").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == [".tmp-precious", "work"]


def test_build_deletes_only_the_files_it_wrote(world, tmp_path):
    out = tmp_path / "atlas"
    run_build(world["generator"], world["embedder"], out, **SMALL, shard="0/1")  # work folder complete, no atlas
    (work_dir(out) / "notes.txt").write_text("mine")
    (out / ".tmp-someone-elses").write_text("not ours")
    (out / ".tmp-atlas.h5.abc123.h5").write_text("a killed writer's leftover")
    report = run_build(world["generator"], world["embedder"], out, **SMALL)
    assert report.status == "complete"
    assert (work_dir(out) / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in work_dir(out).iterdir()) == ["notes.txt"]
    assert (out / ".tmp-someone-elses").exists() and not (out / ".tmp-atlas.h5.abc123.h5").exists()


# ---------------------------------------------------------------- item 3: NaN never reaches the atlas
def test_infinite_alpha_is_refused_before_anything_runs(world, tmp_path, capsys):
    for alpha in ("1e400", "inf", "nan", "-1"):
        err = build_cli_error(capsys, *cli_models(world), "--alpha", alpha, "--out", str(tmp_path / "a"))
        assert "alpha" in err
    with pytest.raises(AtlasError, match="alpha"):
        build_atlas(world["generator"], world["embedder"], tmp_path / "b", **{**SMALL, "alpha": float("inf")})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


class Overflowing:
    """The tiny CLIP, except that image embeddings (or text ones) of one call come back NaN (an fp16 overflow)."""

    def __init__(self, embedder, what):
        self.embedder, self.what, self.calls = embedder, what, 0

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def encode_image(self, images, *args, **kwargs):
        out = self.embedder.encode_image(images, *args, **kwargs)
        self.calls += 1
        return out * float("nan") if self.what == "image" and self.calls == 2 else out

    def encode_text(self, texts, *args, **kwargs):
        out = self.embedder.encode_text(texts, *args, **kwargs)
        return out * float("nan") if self.what == "text" else out


@pytest.mark.parametrize("what, stage", [("image", "relevance"), ("text", "vocabulary")])
def test_a_nan_chunk_is_refused_not_written(world, tmp_path, what, stage):
    out = tmp_path / "nan"
    embedder = Overflowing(world["embedder"], what)
    with pytest.raises(AtlasError, match="NaN"):
        build_atlas(world["generator"], embedder, out, **SMALL)
    assert not (out / "atlas.h5").exists()
    for p in (work_dir(out) / stage).glob("*.npz"):
        z = np.load(p)
        assert all(np.isfinite(z[k]).all() for k in z.files if z[k].dtype.kind == "f")


def test_build_json_is_strict(world, tmp_path, capsys):
    build_main(
        [
            *cli_models(world),
            "--out",
            str(tmp_path / "j"),
            "--json",
            "--vocabulary",
            str(_vocab_file(tmp_path)),
            "--dry-run",
        ]
    )
    text = capsys.readouterr().out

    def refuse(name):
        raise ValueError(name)

    json.loads(text, parse_constant=refuse)


def _vocab_file(tmp_path, text="red\ngreen\nblue\n"):
    path = tmp_path / "vocab.txt"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- item 6: phrases at planning time
def test_control_characters_fail_at_planning(world, tmp_path):
    bad = tmp_path / "nul.txt"
    bad.write_bytes(b"red\nbl\x00ue\n")
    with pytest.raises(AtlasError, match="control characters"):
        build_atlas(world["generator"], world["embedder"], tmp_path / "a", **{**SMALL, "vocabulary": bad})
    with pytest.raises(AtlasError, match="control characters"):
        build_atlas(world["generator"], world["embedder"], tmp_path / "a", **{**SMALL, "templates": ["a {}\x1b."]})
    with pytest.raises(AtlasError, match="control characters"):
        build_atlas(world["generator"], world["embedder"], tmp_path / "a", **{**SMALL, "neutral": "sha\x07pe"})
    assert not (tmp_path / "a").exists()


def test_bom_and_case_variants_are_one_phrase(world, tmp_path):
    from pipeline.vocabulary import resolve

    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffred\nRed\n  RED \nblue\n".encode("utf-8"))
    assert resolve([str(path)], 10, "shape") == ["red", "blue"]


# ---------------------------------------------------------------- item 7: reruns repair
def test_rerun_rewrites_a_deleted_catalog_and_an_unreadable_manifest(world, tmp_path):
    out = tmp_path / "atlas"
    shutil.copytree(world["atlas"], out)
    (out / "catalog.duckdb").unlink()
    report = run_build(world["generator"], world["embedder"], out, **SMALL)
    assert report.status == "already complete" and (out / "catalog.duckdb").exists()
    index.read_atlas(out)
    (out / "MANIFEST.json").write_text("{ truncated")
    assert run_build(world["generator"], world["embedder"], out, **SMALL).status == "already complete"
    assert json.loads((out / "MANIFEST.json").read_text())["complete"]
    (out / "relevance.faiss").write_bytes(b"junk")
    run_build(world["generator"], world["embedder"], out, **SMALL)
    index.read_atlas(out)


def test_a_damaged_atlas_without_work_folder_names_the_file_to_delete(world, tmp_path):
    out = tmp_path / "atlas"
    shutil.copytree(world["atlas"], out)
    raw = bytearray((out / "atlas.h5").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (out / "atlas.h5").write_bytes(bytes(raw))
    with pytest.raises(AtlasError, match="delete .*atlas.h5"):
        run_build(world["generator"], world["embedder"], out, **SMALL)


def test_unreadable_plan_is_named_and_a_truncated_chunk_is_recomputed(world, tmp_path):
    out = tmp_path / "atlas"
    run_build(world["generator"], world["embedder"], out, **SMALL, shard="0/1")
    chunk = chunk_path(out, "relevance", 1)
    chunk.write_bytes(chunk.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="damaged"):
        assert run_build(world["generator"], world["embedder"], out, **SMALL).status == "complete"
    # the uninterrupted build, here: the session's world may have been built under another torch state (threads)
    ref = index.read_atlas(build_atlas(world["generator"], world["embedder"], tmp_path / "reference", **SMALL))
    np.testing.assert_array_equal(index.read_atlas(out).relevance, ref.relevance)
    other = tmp_path / "other"
    run_build(world["generator"], world["embedder"], other, **SMALL, shard="0/1")
    plan_path(other).write_text("{ not json")
    with pytest.raises(AtlasError, match="plan.json"):
        run_build(world["generator"], world["embedder"], other, **SMALL)


# ---------------------------------------------------------------- item 10: one build at a time
def test_a_second_build_says_who_holds_the_lock(world, tmp_path):
    from index.work import BuildLock

    out = tmp_path / "atlas"
    out.mkdir()
    with BuildLock(out):
        with pytest.raises(AtlasError, match=r"another build is running .*pid \d+"):
            run_build(world["generator"], world["embedder"], out, **SMALL)
    assert run_build(world["generator"], world["embedder"], out, **SMALL).status == "complete"
    assert not work_dir(out).exists()


def test_a_refused_build_leaves_no_work_folder(world, tmp_path):
    with pytest.raises(AtlasError):
        run_build(world["generator"], world["embedder"], world["atlas"], **{**SMALL, "num_images": 3})
    assert not work_dir(world["atlas"]).exists()


# ---------------------------------------------------------------- item 11: the atlas remembers its models
def test_model_sources_are_recorded_everywhere(world):
    want = dict(generator=str(world["gen"].resolve()), clip=str(world["clip"].resolve()), pretrained=None)
    data = index.read_atlas(world["atlas"])
    assert data.models == want
    assert json.loads((world["atlas"] / "MANIFEST.json").read_text())["models"] == want
    with index.open_catalog(world["atlas"]) as con:
        assert json.loads(con.execute("SELECT models FROM builds").fetchone()[0]) == want
    assert data.embedder_architecture.startswith("arch:")


def test_cli_build_records_the_demo_and_refuses_random_clip_weights(world, tmp_path, capsys):
    err = build_cli_error(
        capsys,
        "--generator",
        str(world["gen"]),
        "--clip",
        str(world["clip"]),
        "--neutral",
        "shape",
        "--out",
        str(tmp_path / "a"),
        "--device",
        "cpu",
    )
    assert "--pretrained" in err and "--random-weights" in err
    from models.stylegan2 import load_generator
    from pipeline.build import model_sources

    assert model_sources(load_generator("demo"), world["embedder"])["generator"] == "demo"


# ---------------------------------------------------------------- item 14: the neutral is said, not guessed
def test_neutral_is_required_except_for_the_demo(world, tmp_path, capsys):
    with pytest.raises(AtlasError, match="--neutral face"):
        build_atlas(world["generator"], world["embedder"], tmp_path / "a", **{**SMALL, "neutral": None})
    from models.stylegan2 import load_generator
    from pipeline.build import default_neutral

    assert default_neutral(load_generator("demo")) == "shape"
    big = type("Big", (), dict(resolution=1024))()
    with pytest.raises(AtlasError, match="--neutral"):
        default_neutral(big)


# ---------------------------------------------------------------- item 16: one device rule, honest summaries
def test_one_device_rule_and_merge_summary(world, tmp_path, capsys, monkeypatch):
    from models.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == "cpu"
    with pytest.raises(AtlasError, match="no CUDA GPU"):
        resolve_device("cuda")
    from click.testing import CliRunner

    from pipeline.cli import cli as build_cli
    from query.cli import cli as query_cli

    assert "[default: auto]" in CliRunner().invoke(build_cli, ["--help"]).output
    assert "[default: auto]" in CliRunner().invoke(query_cli, ["direction", "--help"]).output
    out = tmp_path / "sharded"
    run_build(world["generator"], world["embedder"], out, **SMALL, shard="0/1")
    build_main(["merge", "--out", str(out)])
    summary = capsys.readouterr().out
    assert "workers 1" not in summary and "merged" in summary


def test_auto_beta_says_what_it_chose(world, capsys):
    from query.cli import main as query_main

    query_main(["direction", "red", "--beta", "auto", "--atlas", str(world["atlas"])])
    first = capsys.readouterr().out.splitlines()[0]
    assert "beta auto -> 0.10" in first and "channels" in first and "fewer than the 20" in first


# ---------------------------------------------------------------- item 8 (build side) and item 13 (what loaded)
def test_build_inputs_that_gave_tracebacks_are_one_line(world, tmp_path, capsys):
    out = ["--out", str(tmp_path / "a")]
    assert "layers" in build_cli_error(capsys, *cli_models(world), "--layers", "abc", *out)
    assert "seed" in build_cli_error(capsys, *cli_models(world), "--seed", "99999999999999999999", *out)
    assert "device" in build_cli_error(capsys, *cli_models(world), "--device", "tpu", *out)
    if not torch.cuda.is_available():
        args = [a for a in cli_models(world) if a != "cpu" and a != "--device"]
        assert "no CUDA GPU" in build_cli_error(capsys, *args, "--device", "cuda", *out)
    text = tmp_path / "gen.txt"
    text.write_text("not a checkpoint\n")
    args = cli_models(world)
    args[args.index("--generator") + 1] = str(text)
    assert "gen.txt" in build_cli_error(capsys, *args, *out)
    assert not (tmp_path / "a").exists()


def test_build_says_which_weights_it_loaded(world, tmp_path, capsys):
    build_main(
        [*cli_models(world), "--out", str(tmp_path / "w"), "--vocabulary", str(_vocab_file(tmp_path)), "--dry-run"]
    )
    err = capsys.readouterr().err
    assert f"generator: {world['gen']}" in err and "RANDOM weights" in err
