"""The same build split across workers gives the same atlas: torchrun with 2 CPU ranks, and --shard i/n + merge."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import index
from pipeline import merge, run_build
from pipeline.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
ARRAYS = (
    "channels",
    "relevance",
    "consistency",
    "style_mean",
    "style_std",
    "vocab_embeddings",
    "neutral_embedding",
    "labels_index",
    "labels_score",
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from conftest import tiny_clip_config

    from models.stylegan2 import save_generator, small_generator

    folder = tmp_path_factory.mktemp("models")
    save_generator(small_generator(seed=0, resolution=16, style_dim=16, width=8), folder / "gen.pt")
    (folder / "clip.json").write_text(json.dumps(tiny_clip_config()))
    (folder / "vocab.txt").write_text("# colours\nred\ngreen\n\nsmiling\nbig shape\n", encoding="utf-8")
    (folder / "templates.txt").write_text("a photo of a {}.\na {}.\n", encoding="utf-8")
    return folder


def _args(models, out, *extra):
    return [
        "--generator",
        str(models / "gen.pt"),
        "--clip",
        str(models / "clip.json"),
        "--out",
        str(out),
        "--num-images",
        "4",
        "--num-samples",
        "600",
        "--batch-size",
        "6",
        "--vocabulary",
        str(models / "vocab.txt"),
        "--templates",
        str(models / "templates.txt"),
        "--device",
        "cpu",
        "--neutral",
        "shape",
        "--random-weights",
        *extra,
    ]


def _run(cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return out


def _same(a_dir, b_dir):
    a, b = index.read_atlas(a_dir), index.read_atlas(b_dir)
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.vocab == b.vocab and a.config == b.config


@pytest.fixture(scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's workers (OMP_NUM_THREADS=1): float results agree bit for bit
    yield
    torch.set_num_threads(old)


def _load(models):
    from models.clip import load_clip
    from models.stylegan2 import load_generator

    return load_generator(models / "gen.pt"), load_clip(str(models / "clip.json"))


def _kwargs(models):
    return dict(
        num_images=4,
        num_samples=600,
        batch_size=6,
        vocabulary=models / "vocab.txt",
        templates=str(models / "templates.txt"),
        device="cpu",
        neutral="shape",
        progress=False,
    )


@pytest.fixture(scope="module")
def single(models, one_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "atlas"
    report = run_build(*_load(models), out, **_kwargs(models))
    assert report.status == "complete" and report.channels == 40 and report.images_rendered == 320
    return out


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_match_one_process(models, single, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    res = _run(
        [torchrun, "--standalone", "--nproc_per_node=2", "build_index.py", *_args(models, tmp_path / "tr"), "--json"]
    )
    report = json.loads(res.stdout)  # rank 0 alone prints
    assert report["workers"] == 2 and report["status"] == "complete"
    assert report["images_rendered"] == 320  # the run's renders, summed over both ranks (issue 9 item 16)
    _same(single, tmp_path / "tr")


def test_shards_then_merge_match_one_process(models, single, tmp_path):
    gen, clip = _load(models)
    for i in range(2):
        assert run_build(gen, clip, tmp_path / "sh", **_kwargs(models), shard=f"{i}/2").status == "shard done"
    assert not (tmp_path / "sh" / "atlas.h5").exists()
    assert merge(tmp_path / "sh").status == "complete"
    _same(single, tmp_path / "sh")


def test_dry_run_prints_the_plan_and_computes_nothing(models, tmp_path, capsys):
    cli_main(_args(models, tmp_path / "dry") + ["--dry-run"])
    out = capsys.readouterr().out
    assert "320 renders" in out and "40 channels" in out and "4 phrases x 2 templates" in out
    assert not (tmp_path / "dry").exists()


def test_merge_of_unfinished_shards_is_a_one_line_error(models, tmp_path, capsys):
    run_build(*_load(models), tmp_path / "half", **_kwargs(models), shard="1/2")
    with pytest.raises(SystemExit) as exit_:
        cli_main(["merge", "--out", str(tmp_path / "half")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "relevance stage" in err and "of 3 chunks done" in err


def test_cli_build_prints_a_one_screen_summary(models, single, tmp_path, capsys):
    cli_main(_args(models, tmp_path / "cli"))
    out = capsys.readouterr().out
    assert out.startswith(f"complete: {tmp_path / 'cli'}") and len(out.splitlines()) <= 10
    assert "channels 40 in 5 layers" in out and "images rendered this run 320 of 320" in out
    assert "relevance" in out and "atlas size" in out
    _same(single, tmp_path / "cli")
    cli_main(_args(models, tmp_path / "cli"))
    assert capsys.readouterr().out.startswith("already complete")
