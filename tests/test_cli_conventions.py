"""The CLIs share one set of conventions (models/cli.py) and read their defaults from the library, and a seed
means the same image everywhere (models/seeds.py): API, query CLI and web page."""

import inspect
import json
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import models.convert
import pipeline.cli
import query.cli
import serve.cli
from models.seeds import DEFAULT_PSI, seed_ws, seed_z
from models.stylegan2 import small_generator

ROOT = Path(__file__).resolve().parents[1]
CLIS = dict(build=pipeline.cli.cli, query=query.cli.cli, serve=serve.cli.cli, convert=models.convert.cli)


def commands(cli, path=()):
    """(path, command) of every command under a click group, the group itself included."""
    yield path, cli
    for name, sub in getattr(cli, "commands", {}).items():
        yield from commands(sub, path + (name,))


def default(command, param):
    """What click passes when the option is not given (click 8.4 keeps an UNSET sentinel in param.default)."""
    return param.get_default(click.Context(command))


def option_default(command, name):
    return default(command, next(p for p in command.params if p.name == name))


def query_command(*path):
    command = query.cli.cli
    for name in path:
        command = command.commands[name]
    return command


def signature_default(fn, name):
    return inspect.signature(fn).parameters[name].default


# ------------------------------------------------------------------------------------------------- item 4
def test_build_option_defaults_are_the_config_defaults():
    """Passing the CLI's default of every build option gives the config nobody changed (pipeline/config.py)."""
    from pipeline.config import _FLAT, make_config

    default_config, _ = make_config()
    checked = 0
    for param in pipeline.cli.cli.params:
        if param.name not in _FLAT:
            continue
        value = default(pipeline.cli.cli, param)
        if param.multiple:  # an unset repeatable option is None to make_config: the dataclass default
            value = tuple(value) if isinstance(value, (list, tuple)) and value else None
        assert make_config(**{param.name: value})[0] == default_config, param.name
        if value is not None:  # the value the help shows is the dataclass field itself
            for stage, field in _FLAT[param.name]:
                assert getattr(getattr(default_config, stage), field) == value, (param.name, stage, field)
        checked += 1
    assert checked >= 15  # num_images, alpha, psi, seed, batch_size, ... every build option of the config


def test_query_option_defaults_are_the_library_defaults():
    from query import DEFAULT_BETA
    from query.atlas import Atlas
    from query.catalog import run_sql
    from query.edit import channel_grid, edit_strip
    from query.inversion import invert
    from query.mapper import LEVELS
    from query.mapper_train import train_mapper
    from query.optimization import optimize

    for path, command in commands(query.cli.cli):  # beta and psi: every command that has them
        for param in command.params:
            if param.name == "beta":
                assert default(command, param) == str(DEFAULT_BETA), path
            if param.name == "psi":
                assert default(command, param) == DEFAULT_PSI, path
            if param.name == "invert_steps":
                assert default(command, param) == signature_default(invert, "steps"), path
    for name in ("steps", "lr", "l2_lambda", "id_lambda", "preprocess", "l2_norm"):
        assert option_default(query_command("optimize"), name) == signature_default(optimize, name), name
    assert option_default(query_command("compare"), "optimize_steps") == signature_default(optimize, "steps")
    for name in ("steps", "batch_size", "lr", "l2_lambda", "id_lambda", "seed", "psi"):
        assert option_default(query_command("mapper", "train"), name) == signature_default(train_mapper, name)
    assert option_default(query_command("mapper", "train"), "levels") == ",".join(LEVELS)
    assert option_default(query_command("invert"), "seed") == signature_default(invert, "seed")
    for name in ("alpha", "steps", "cell", "psi"):
        assert option_default(query_command("channel"), name) == signature_default(channel_grid, name), name
    assert option_default(query_command("channel"), "seed") == tuple(signature_default(channel_grid, "seeds"))
    for name in ("noise_mode", "cell", "psi"):
        assert option_default(query_command("edit"), name) == signature_default(edit_strip, name), name
    assert option_default(query_command("compare"), "alpha") == signature_default(Atlas.edit_text, "alpha")
    assert float(option_default(query_command("edit"), "alpha")[0]) == signature_default(Atlas.edit_text, "alpha")
    assert option_default(query_command("sql"), "limit") == signature_default(run_sql, "limit")
    assert option_default(query_command("similar"), "k") == signature_default(Atlas.similar, "k")
    assert signature_default(Atlas.sample_ws, "psi") == DEFAULT_PSI


# ------------------------------------------------------------------------------------------------- item 5
def test_every_cli_shares_device_json_and_seed_options():
    image_seeds = {("edit",), ("optimize",), ("compare",), ("channel",)}
    for cli_name, cli in CLIS.items():
        for path, command in commands(cli):
            if isinstance(command, click.Group) and not command.params:
                continue  # a group without options (query, mapper) only dispatches
            names = {p.name: p for p in command.params}
            assert "as_json" in names and names["as_json"].is_flag, (cli_name, path)
            if "device" in names:
                assert default(command, names["device"]) == "auto", (cli_name, path)
            if cli_name == "query" and path in image_seeds:
                assert names["seed"].multiple and names["seed"].opts == ["--seed"], path
    assert {"device" in {p.name for p in CLIS[c].params} for c in ("build", "serve")} == {True}


def test_merge_and_add_vocabulary_refuse_build_options_they_would_ignore(tmp_path):
    result = CliRunner().invoke(pipeline.cli.cli, ["--num-images", "5", "merge", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "merge does not use --num-images" in result.output
    result = CliRunner().invoke(
        pipeline.cli.cli, ["--keep-work", "--psi", "0.5", "add-vocabulary", str(tmp_path / "p.txt")]
    )
    assert result.exit_code == 2 and "add-vocabulary does not use --psi, --keep-work" in result.output


def test_ctrl_c_talks_about_resuming_only_where_a_command_resumes(tmp_path, monkeypatch, capsys):
    import pipeline.build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(query.cli, "open_atlas", interrupted)
    with pytest.raises(SystemExit) as info:
        query.cli.main(["direction", "red", "--atlas", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 130 and "interrupted" in err and "resume" not in err
    monkeypatch.setattr(pipeline.build, "merge", interrupted)
    with pytest.raises(SystemExit) as info:
        pipeline.cli.main(["merge", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 130 and "run the same command again to resume" in err


@pytest.mark.parametrize("package", ["query", "pipeline", "serve"])
def test_python_dash_m(package):
    out = subprocess.run(
        [sys.executable, "-m", package, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "Usage: python -m " + package in out.stdout, out.stderr


def test_one_json_emitter_strict_json(capsys):
    from models.cli import emit

    emit(True, dict(a=float("nan"), b=np.float32(0.5), c=np.arange(2), d=Path("x")))
    assert json.loads(capsys.readouterr().out) == dict(a=None, b=0.5, c=[0, 1], d="x")


def test_warnings_print_as_one_line_each(capsys):
    import warnings

    from models.cli import warnings_as_lines

    with warnings_as_lines():
        warnings.warn("first line\nsecond line", UserWarning)
        warnings.warn("not for people", DeprecationWarning)
    assert capsys.readouterr().err.splitlines() == ["warning: first line"]


# ------------------------------------------------------------------------------------------------- item 6
def test_a_seed_is_one_z_whatever_else_is_asked_for():
    z = seed_z(range(4), 16)  # [4, 16]: NVIDIA's gen_images.py rule, with torch's generator
    for s in range(4):
        assert torch.equal(z[s], torch.randn(1, 16, generator=torch.Generator().manual_seed(s))[0])
    assert torch.equal(seed_z([2, 0], 16), z[[2, 0]])
    gen = small_generator(seed=0, resolution=16, width=8)
    four = gen.sample_ws(4, seed=0, psi=0.7)  # [4, w_dim]; the mapping's batch changes only float rounding
    close = dict(rtol=0, atol=1e-6)
    torch.testing.assert_close(four[2:3], gen.sample_ws(1, seed=2, psi=0.7), **close)
    torch.testing.assert_close(four[1:], gen.sample_ws(3, seed=1, psi=0.7), **close)
    torch.testing.assert_close(four[[3, 0]], seed_ws(gen, [3, 0], 0.7), **close)
    assert (four[0] - four[1]).abs().max() > 0.01  # and other seeds are other images


@pytest.fixture(scope="module")
def tiny_atlas(tmp_path_factory):
    from conftest import tiny_clip_config

    from models.clip import load_clip
    from models.stylegan2 import save_generator
    from pipeline import build_atlas

    root = tmp_path_factory.mktemp("seeds")
    gen = small_generator(seed=0, resolution=16, width=8)
    (root / "clip.json").write_text(json.dumps(tiny_clip_config()))
    build_atlas(
        gen,
        load_clip(str(root / "clip.json")),
        root / "atlas",
        num_images=2,
        num_samples=200,
        vocabulary=["red", "blue", "shape"],
        templates=["a {}."],
        neutral="shape",
        progress=False,
    )
    save_generator(gen, root / "gen.pt")
    return root, gen


def test_query_cli_seed_is_the_api_seed(tiny_atlas):
    """`query.py edit --seed 2 --seed 0` renders gen.sample_ws(3, seed=0)[2] and [0]: one image per seed."""
    from query import Atlas
    from query.media import to_uint8

    root, gen = tiny_atlas
    frames = root / "frames"
    args = ["edit", "red", "--beta", "0.01", "--seed", "2", "--seed", "0", "-o", str(root / "e.png")]
    args += ["--save-frames", str(frames), "--atlas", str(root / "atlas"), "--generator", str(root / "gen.pt")]
    result = CliRunner().invoke(query.cli.cli, [*args, "--clip", str(root / "clip.json"), "--json"])
    assert result.exit_code == 0, result.output
    atlas = Atlas.open(root / "atlas", generator=gen)
    want = to_uint8(atlas.render(gen.sample_ws(3, seed=0, psi=DEFAULT_PSI)))  # [3, H, W, 3]
    for seed in (2, 0):
        got = np.asarray(Image.open(frames / f"seed{seed}_original.png").convert("RGB")).astype(int)
        assert np.abs(got - want[seed].astype(int)).max() <= 1, seed  # batch-of-2 vs batch-of-3 rounding
