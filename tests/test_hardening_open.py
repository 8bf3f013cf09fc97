"""Issue 9 items 3, 4, 5, 8, 9: an atlas is checked when opened (every corruption is one line, never a wrong
answer), NaN never passes, outputs never land inside the atlas, bad input is one line, one composition parser."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from helpers import query_error, reseal

import index
from models.errors import AtlasError, AtlasFormatError
from query import Atlas
from query.cli import main


@pytest.fixture(scope="module")
def world(shared_world):
    """The session's tiny world (conftest): copy the atlas before changing anything in it."""
    return shared_world


def copy_atlas(world, tmp_path, name="copy"):
    out = tmp_path / name
    shutil.copytree(world["atlas"], out)
    return out


def edit_h5(atlas, fn, seal=True):
    with h5py.File(atlas / "atlas.h5", "r+") as h5:
        fn(h5)
    if seal:
        reseal(atlas)


def replace(h5, name, value):
    del h5[name]
    h5.create_dataset(name, data=value)


# ---------------------------------------------------------------- item 4: corruptions
def test_flipped_byte_is_caught_by_the_manifest_hash(world, tmp_path):
    atlas = copy_atlas(world, tmp_path)
    with h5py.File(atlas / "atlas.h5", "r") as h5:
        offset = h5["relevance"].id.get_offset()
    raw = bytearray((atlas / "atlas.h5").read_bytes())
    raw[offset + 5] ^= 0x10
    (atlas / "atlas.h5").write_bytes(bytes(raw))
    with pytest.raises(AtlasFormatError, match="sha256"):
        index.read_atlas(atlas)


@pytest.mark.parametrize(
    "corruption, message",
    [
        (lambda h5: replace(h5, "channels", h5["channels"][()] + np.array([0, 10_000])), "outside their layer"),
        (lambda h5: replace(h5, "style/std", -np.abs(h5["style/std"][()]) - 1), "negative"),
        (lambda h5: replace(h5, "relevance", h5["relevance"][()] * 1e4), "norm"),
        (lambda h5: replace(h5, "consistency", h5["consistency"][()][:-3]), "consistency has shape"),
        (lambda h5: replace(h5, "vocabulary/embeddings", h5["vocabulary/embeddings"][()][:, :5]), "vocab_embeddings"),
        (lambda h5: replace(h5, "labels/index", h5["labels/index"][()] + 100), "labels/index"),
    ],
)
def test_inconsistent_arrays_are_refused_on_open(world, tmp_path, corruption, message):
    atlas = copy_atlas(world, tmp_path)
    edit_h5(atlas, corruption)
    with pytest.raises(AtlasFormatError, match=message):
        index.read_atlas(atlas)


@pytest.mark.parametrize("name", ["relevance", "style/std", "vocabulary/embeddings", "neutral_embedding"])
def test_nan_in_an_atlas_is_refused_on_open(world, tmp_path, name):
    atlas = copy_atlas(world, tmp_path)

    def poison(h5):
        a = h5[name][()]
        a.reshape(-1)[0] = np.nan
        replace(h5, name, a)

    edit_h5(atlas, poison)
    with pytest.raises(AtlasFormatError, match="NaN"):
        index.read_atlas(atlas)


def test_swapped_vocab_index_is_refused(world, tmp_path):
    atlas = copy_atlas(world, tmp_path)
    data = index.read_atlas(atlas)
    swapped = index.build_ip_index(data.vocab_embeddings[::-1].copy())  # same size, other order
    from index.search import write_index

    write_index(swapped, atlas / "vocab.faiss")
    with pytest.raises(AtlasFormatError, match="sha256"):
        index.read_atlas(atlas)
    reseal(atlas)
    with pytest.raises(AtlasFormatError, match="vocab.faiss holds other vectors"):
        index.read_atlas(atlas)


def test_forged_header_declaring_a_huge_dataset_is_refused_without_allocating(world, tmp_path):
    atlas = copy_atlas(world, tmp_path)

    def forge(h5):
        del h5["relevance"]
        h5.create_dataset("relevance", shape=(10**8, 32), dtype="f4")  # declared, never written

    edit_h5(atlas, forge)
    assert (atlas / "atlas.h5").stat().st_size < 10**7
    with pytest.raises(AtlasFormatError, match="declares"):
        index.read_atlas(atlas)


def test_garbage_manifest_index_and_catalog_are_one_line(world, tmp_path, capsys):
    atlas = copy_atlas(world, tmp_path)
    (atlas / "MANIFEST.json").write_text("{ not json")
    assert "MANIFEST.json" in query_error(capsys, "direction", "red", "--atlas", str(atlas))
    atlas = copy_atlas(world, tmp_path, "faiss")
    (atlas / "vocab.faiss").write_bytes(b"garbage" * 10)
    reseal(atlas)
    assert "vocab.faiss" in query_error(capsys, "similar", "red", "--atlas", str(atlas))
    atlas = copy_atlas(world, tmp_path, "duck")
    (atlas / "catalog.duckdb").write_bytes(b"garbage" * 1000)
    reseal(atlas)
    assert "catalog.duckdb" in query_error(capsys, "sql", "SELECT 1", "--atlas", str(atlas))


def test_locked_catalog_is_one_line(world, tmp_path, capsys):
    import duckdb

    atlas = copy_atlas(world, tmp_path)
    holder = duckdb.connect(str(atlas / "catalog.duckdb"))  # a writer holding the file
    try:
        assert "catalog.duckdb" in query_error(capsys, "sql", "SELECT 1", "--atlas", str(atlas))
    finally:
        holder.close()


# ---------------------------------------------------------------- item 3: NaN at the query entry points
def test_alpha_that_overflows_float32_is_refused(world, tmp_path, capsys):
    atlas = ["--atlas", str(world["atlas"]), "--generator", str(world["gen"])]
    for alpha in ("1e39", "inf", "nan", "1e400"):
        err = query_error(
            capsys, "edit", "red", "--beta", "0.05", "--alpha", alpha, "-o", str(tmp_path / "e.png"), *atlas
        )
        assert "alpha" in err
        err = query_error(capsys, "channel", "0", "0", "--alpha", alpha, "-o", str(tmp_path / "c.png"), *atlas)
        assert "alpha" in err
    assert not (tmp_path / "e.png").exists() and not (tmp_path / "c.png").exists()


def test_json_output_is_strict(world, capsys):
    main(["sql", "SELECT 'nan'::DOUBLE AS x, 'inf'::DOUBLE AS y, 1.5 AS z", "--json", "--atlas", str(world["atlas"])])
    text = capsys.readouterr().out

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    assert json.loads(text, parse_constant=refuse)["rows"] == [dict(x=None, y=None, z=1.5)]


# ---------------------------------------------------------------- item 5: nothing is written into the atlas
def test_outputs_inside_the_atlas_are_refused(world, tmp_path, capsys):
    atlas = copy_atlas(world, tmp_path)
    before = {p.name: p.read_bytes() for p in atlas.iterdir() if p.is_file()}
    prompts = tmp_path / "p.txt"
    prompts.write_text("red\n")
    args = ["--atlas", str(atlas), "--generator", str(world["gen"])]
    for target in ("atlas.h5", "lib.npz", "sub/lib.pt"):
        assert "inside the atlas" in query_error(capsys, "export", str(prompts), "-o", str(atlas / target), *args)
    assert "inside the atlas" in query_error(capsys, "edit", "red", "--beta", "0.05", "-o", str(atlas / "e.png"), *args)
    assert "inside the atlas" in query_error(capsys, "channel", "0", "0", "-o", str(atlas / "g.png"), *args)
    assert "inside the atlas" in query_error(
        capsys, "channels", "red", "--beta", "0.05", "--plot", str(atlas / "p.png"), *args
    )
    assert {p.name: p.read_bytes() for p in atlas.iterdir() if p.is_file()} == before
    index.read_atlas(atlas)


# ---------------------------------------------------------------- item 8: one line, not a traceback
def test_inputs_that_gave_tracebacks_are_one_line(world, tmp_path, capsys):
    atlas = ["--atlas", str(world["atlas"])]
    gen = ["--generator", str(world["gen"])]
    assert "-k" in query_error(capsys, "similar", "red", "-k", "0", *atlas)
    assert "-k" in query_error(capsys, "similar", "red", "-k", "-3", *atlas)
    assert "seed" in query_error(
        capsys,
        "edit",
        "red",
        "--beta",
        "0.05",
        "--seed",
        "99999999999999999999",
        "-o",
        str(tmp_path / "e.png"),
        *atlas,
        *gen,
    )
    for flag in ("--seed", "--seeds"):  # --seeds: the old spelling, still accepted
        assert "seed" in query_error(
            capsys, "channel", "0", "0", flag, "99999999999999999999", "-o", str(tmp_path / "g.png"), *atlas, *gen
        )
    torch.save(torch.zeros(0, world["generator"].w_dim), tmp_path / "empty.pt")
    assert "no codes" in query_error(
        capsys,
        "edit",
        "red",
        "--beta",
        "0.05",
        "--latent",
        str(tmp_path / "empty.pt"),
        "-o",
        str(tmp_path / "e.png"),
        *atlas,
        *gen,
    )
    assert "--cell" in query_error(
        capsys, "edit", "red", "--beta", "0.05", "--cell", "100000", "-o", str(tmp_path / "e.png"), *atlas, *gen
    )
    assert "--cell" in query_error(
        capsys, "channel", "0", "0", "--cell", "100000", "-o", str(tmp_path / "g.png"), *atlas, *gen
    )
    assert "--steps" in query_error(
        capsys, "channel", "0", "0", "--steps", "1000000", "-o", str(tmp_path / "g.png"), *atlas, *gen
    )
    assert "at most" in query_error(capsys, "edit", "red", "--alpha", "0:1:1000000000", *atlas, *gen)
    assert "device" in query_error(capsys, "direction", "red", "--device", "gpu9", *atlas)
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in query_error(
            capsys, "edit", "red", "--beta", "0.05", "--device", "cuda", "-o", str(tmp_path / "e.png"), *atlas, *gen
        )
    text = tmp_path / "gen.txt"
    text.write_text("this is not a checkpoint\n")
    assert "gen.txt" in query_error(
        capsys, "edit", "red", "--beta", "0.05", "-o", str(tmp_path / "e.png"), *atlas, "--generator", str(text)
    )


def test_full_disk_and_unwritable_folder_are_one_line(world, tmp_path, capsys, monkeypatch):
    import errno
    import os

    import models.files

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(models.files.os, "replace", full)
    err = query_error(
        capsys,
        "edit",
        "red",
        "--beta",
        "0.05",
        "-o",
        str(tmp_path / "e.png"),
        "--atlas",
        str(world["atlas"]),
        "--generator",
        str(world["gen"]),
    )
    assert "No space left on device" in err
    monkeypatch.undo()
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        err = query_error(
            capsys,
            "edit",
            "red",
            "--beta",
            "0.05",
            "-o",
            str(ro / "e.png"),
            "--atlas",
            str(world["atlas"]),
            "--generator",
            str(world["gen"]),
        )
        assert "ermission" in err


def test_ctrl_c_during_sql_is_one_line(world):
    import os
    import signal
    import threading

    from query.catalog import run_sql

    # a terminal's Ctrl-C: Python's handler (a shell starting pytest in the background without job control
    # leaves SIGINT ignored, and Python then installs none, so the signal would never arrive)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises((AtlasError, KeyboardInterrupt)) as info:
            run_sql(world["atlas"], "SELECT count(*) FROM range(1000000000000)", timeout_s=30)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    if info.type is not KeyboardInterrupt:
        assert "interrupted" in str(info.value)


# ---------------------------------------------------------------- item 9: one composition parser
def test_export_composes_like_direction(world, tmp_path, capsys):
    atlas = Atlas.open(world["atlas"])
    composed = atlas.direction("red:1 + blue:1", beta=0.05)
    from query.export import compute_library

    lib = compute_library(atlas, ["red:1 + blue:1", "red"], beta=0.05)
    assert lib.source[0] == "composition" and lib.num_c[0] == composed.num_c
    np.testing.assert_array_equal(lib.delta_s[0], composed.delta_s)
    with pytest.raises(AtlasError, match="cancels out"):
        atlas.direction("red:1 + red:-1", beta=0.05)
    with pytest.raises(AtlasError, match="cancels out"):
        atlas.direction("red:0", beta=0.05)
    with pytest.raises(AtlasError, match="finite"):
        atlas.direction("red:nan", beta=0.05)
    prompts = tmp_path / "p.txt"
    prompts.write_text("red:nan\n")
    assert "finite" in query_error(
        capsys, "export", str(prompts), "-o", str(tmp_path / "l.npz"), "--atlas", str(world["atlas"])
    )
    lib = compute_library(atlas, ["red:1 + red:-1", "green"], beta=0.05)
    assert lib.num_c[0] == 0 and "cancels out" in lib.problems[0]["reason"]
