"""A jacobian build (chunk = a block of images) killed with SIGKILL and resumed, or split over two workers,
gives the atlas an uninterrupted single-process build gives, bit for bit."""

import json

import pytest
from helpers import (
    ATLAS_ARRAYS,
    assert_same_atlas,
    build_args,
    finish,
    kill_after_chunks,
    run_ok,
    start_slow_build,
    tiny_models,
    torchrun,
    write_model_files,
)

import index
from models.errors import AtlasFormatError
from pipeline import merge, run_build

KW = dict(
    num_images=6,
    chunk_images=1,
    num_samples=600,
    stats_chunk_size=200,
    batch_size=4,
    chunk_channels=2,
    check_channels=2,
    relevance_method="jacobian",
    vocabulary=["red", "green", "smiling"],
    templates=["a photo of a {}.", "a {}."],
    neutral="shape",
    progress=False,
)
ARRAYS = tuple(name for name in ATLAS_ARRAYS if name != "neutral_embedding")


@pytest.fixture(scope="module")
def single(one_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "atlas"
    assert run_build(*tiny_models(), out, **KW).status == "complete"
    return out


def _same(a_dir, b_dir):
    a, b = assert_same_atlas(a_dir, b_dir, ARRAYS)
    ea, eb = ({k: v for k, v in x.extra["relevance"].items() if "seconds" not in k} for x in (a, b))
    assert ea == eb and ea["method"] == "jacobian"  # the check figures too (their timings aside)


@pytest.mark.slow
def test_jacobian_build_killed_and_resumed_is_bit_identical(single, tmp_path):
    killed = start_slow_build(tmp_path / "resumed", 0.5, KW)
    # 7 chunks planned (6 image blocks + the check)
    done = kill_after_chunks(killed, tmp_path / "resumed" / "work" / "relevance_jacobian", 2)
    assert 2 <= done < 7
    with pytest.raises(AtlasFormatError, match=f"relevance_jacobian stage has {done} of 7 chunks"):
        index.read_atlas(tmp_path / "resumed")  # never an atlas that opens but is wrong
    finish(start_slow_build(tmp_path / "resumed", 0.0, KW))
    _same(single, tmp_path / "resumed")


def test_jacobian_shards_then_merge_match_one_process(single, tmp_path):
    gen, clip = tiny_models()
    for i in range(2):
        assert run_build(gen, clip, tmp_path / "sh", **KW, shard=f"{i}/2").status == "shard done"
    assert merge(tmp_path / "sh").status == "complete"
    _same(single, tmp_path / "sh")


def test_merge_of_unfinished_jacobian_shards_is_a_clear_error(tmp_path):
    run_build(*tiny_models(), tmp_path / "half", **KW, shard="1/2")
    with pytest.raises(Exception, match=r"jacobian relevance stage .* has 3 of 7 chunks done"):
        merge(tmp_path / "half")


@pytest.mark.slow
def test_jacobian_torchrun_two_cpu_ranks_match_one_process(one_thread, tmp_path):
    models = write_model_files(tmp_path, "red\ngreen\nsmiling\n")
    options = dict(num_images=6, chunk_images=1, num_samples=600, batch_size=4, relevance_method="jacobian")
    cmd = [torchrun(), "--standalone", "--nproc_per_node=2", "build_index.py", "--json"]
    report = json.loads(run_ok([*cmd, *build_args(models, tmp_path / "tr", **options)]).stdout)  # rank 0 alone prints
    assert report["workers"] == 2 and report["status"] == "complete"
    files = dict(vocabulary=models / "vocab.txt", templates=str(models / "templates.txt"), device="cpu")
    reference = run_build(*tiny_models(), tmp_path / "one", **options, **files, neutral="shape", progress=False)
    _same(reference.path, tmp_path / "tr")
