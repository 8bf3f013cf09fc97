"""The same build split across workers gives the same atlas: torchrun with 2 CPU ranks, and --shard i/n + merge."""

import json

import pytest
from helpers import assert_same_atlas, build_args, cli_error, run_ok, torchrun, write_model_files

from pipeline import merge, run_build
from pipeline.cli import main as cli_main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_model_files(tmp_path_factory.mktemp("models"), "# colours\nred\ngreen\n\nsmiling\nbig shape\n")


def _args(models, out, *extra):
    return [*build_args(models, out, num_images=4, num_samples=600, batch_size=6), *extra]


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
    res = run_ok(
        [torchrun(), "--standalone", "--nproc_per_node=2", "build_index.py", *_args(models, tmp_path / "tr"), "--json"]
    )
    report = json.loads(res.stdout)  # rank 0 alone prints
    assert report["workers"] == 2 and report["status"] == "complete"
    assert report["images_rendered"] == 320  # the run's renders, summed over both ranks (issue 9 item 16)
    assert_same_atlas(single, tmp_path / "tr")


def test_shards_then_merge_match_one_process(models, single, tmp_path):
    gen, clip = _load(models)
    for i in range(2):
        assert run_build(gen, clip, tmp_path / "sh", **_kwargs(models), shard=f"{i}/2").status == "shard done"
    assert not (tmp_path / "sh" / "atlas.h5").exists()
    assert merge(tmp_path / "sh").status == "complete"
    assert_same_atlas(single, tmp_path / "sh")


def test_dry_run_prints_the_plan_and_computes_nothing(models, tmp_path, capsys):
    cli_main(_args(models, tmp_path / "dry") + ["--dry-run"])
    out = capsys.readouterr().out
    assert "320 renders" in out and "40 channels" in out and "4 phrases x 2 templates" in out
    assert not (tmp_path / "dry").exists()


def test_merge_of_unfinished_shards_is_a_one_line_error(models, tmp_path, capsys):
    run_build(*_load(models), tmp_path / "half", **_kwargs(models), shard="1/2")
    err = cli_error(cli_main, capsys, "merge", "--out", str(tmp_path / "half"))
    assert "relevance stage" in err and "of 3 chunks done" in err


def test_cli_build_prints_a_one_screen_summary(models, single, tmp_path, capsys):
    cli_main(_args(models, tmp_path / "cli"))
    out = capsys.readouterr().out
    assert out.startswith(f"complete: {tmp_path / 'cli'}") and len(out.splitlines()) <= 10
    assert "channels 40 in 5 layers" in out and "images rendered this run 320 of 320" in out
    assert "relevance" in out and "atlas size" in out
    assert_same_atlas(single, tmp_path / "cli")
    cli_main(_args(models, tmp_path / "cli"))
    assert capsys.readouterr().out.startswith("already complete")
