"""A jacobian build (chunk = a block of images) killed with SIGKILL and resumed, or split over two workers,
gives the atlas an uninterrupted single-process build gives, bit for bit."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_resume import SCRIPT as RESUME_SCRIPT
from test_resume import _start, kill_after_chunks

import index
from models.errors import AtlasFormatError
from pipeline import merge, run_build

ROOT = Path(__file__).resolve().parents[1]
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
# test_resume's killed-build script (the slowed-down tiny generator), building with KW instead
SCRIPT = RESUME_SCRIPT[: RESUME_SCRIPT.index("build_atlas(gen,")] + (
    "from test_jacobian_workers import KW\nbuild_atlas(gen, load_clip(tiny_clip_config(), seed=0), sys.argv[1], **KW)\n"
)
ARRAYS = (
    "channels",
    "relevance",
    "consistency",
    "style_mean",
    "style_std",
    "vocab_embeddings",
    "labels_index",
    "labels_score",
)


@pytest.fixture(scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses: float results agree bit for bit
    yield
    torch.set_num_threads(old)


def _models():
    from conftest import tiny_clip_config

    from models.clip import load_clip
    from models.stylegan2 import small_generator

    return small_generator(seed=0, resolution=16, style_dim=16, width=8), load_clip(tiny_clip_config(), seed=0)


@pytest.fixture(scope="module")
def single(one_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "atlas"
    assert run_build(*_models(), out, **KW).status == "complete"
    return out


def _same(a_dir, b_dir):
    a, b = index.read_atlas(a_dir), index.read_atlas(b_dir)
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.config == b.config
    ea, eb = ({k: v for k, v in x.extra["relevance"].items() if "seconds" not in k} for x in (a, b))
    assert ea == eb and ea["method"] == "jacobian"  # the check figures too (their timings aside)


@pytest.mark.slow
def test_jacobian_build_killed_and_resumed_is_bit_identical(single, tmp_path):
    script = tmp_path / "build.py"
    script.write_text(SCRIPT)
    killed = _start(script, tmp_path / "resumed", 0.5)
    # 7 chunks planned (6 image blocks + the check)
    done = kill_after_chunks(killed, tmp_path / "resumed" / "work" / "relevance_jacobian", 2)
    assert 2 <= done < 7
    with pytest.raises(AtlasFormatError, match=f"relevance_jacobian stage has {done} of 7 chunks"):
        index.read_atlas(tmp_path / "resumed")  # never an atlas that opens but is wrong
    resumed = _start(script, tmp_path / "resumed", 0.0)
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err[-2000:]
    _same(single, tmp_path / "resumed")


def test_jacobian_shards_then_merge_match_one_process(single, tmp_path):
    gen, clip = _models()
    for i in range(2):
        assert run_build(gen, clip, tmp_path / "sh", **KW, shard=f"{i}/2").status == "shard done"
    assert merge(tmp_path / "sh").status == "complete"
    _same(single, tmp_path / "sh")


def test_merge_of_unfinished_jacobian_shards_is_a_clear_error(tmp_path):
    run_build(*_models(), tmp_path / "half", **KW, shard="1/2")
    with pytest.raises(Exception, match=r"jacobian relevance stage .* has 3 of 7 chunks done"):
        merge(tmp_path / "half")


@pytest.mark.slow
def test_jacobian_torchrun_two_cpu_ranks_match_one_process(one_thread, tmp_path):
    import json

    from models.stylegan2 import save_generator

    gen, _ = _models()
    save_generator(gen, tmp_path / "gen.pt")
    from conftest import tiny_clip_config

    (tmp_path / "clip.json").write_text(json.dumps(tiny_clip_config()))
    (tmp_path / "vocab.txt").write_text("red\ngreen\nsmiling\n")
    (tmp_path / "templates.txt").write_text("a photo of a {}.\na {}.\n")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "build_index.py",
        "--generator",
        str(tmp_path / "gen.pt"),
        "--clip",
        str(tmp_path / "clip.json"),
        "--out",
        str(tmp_path / "tr"),
        "--num-images",
        "6",
        "--chunk-images",
        "1",
        "--num-samples",
        "600",
        "--batch-size",
        "4",
        "--vocabulary",
        str(tmp_path / "vocab.txt"),
        "--templates",
        str(tmp_path / "templates.txt"),
        "--device",
        "cpu",
        "--neutral",
        "shape",
        "--random-weights",
        "--relevance-method",
        "jacobian",
        "--json",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)  # rank 0 alone prints
    assert report["workers"] == 2 and report["status"] == "complete"
    reference = run_build(
        *_models(),
        tmp_path / "one",
        num_images=6,
        chunk_images=1,
        num_samples=600,
        batch_size=4,
        vocabulary=tmp_path / "vocab.txt",
        templates=str(tmp_path / "templates.txt"),
        device="cpu",
        relevance_method="jacobian",
        neutral="shape",
        progress=False,
    )
    _same(reference.path, tmp_path / "tr")
