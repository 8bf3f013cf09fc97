"""query CLI end to end on a real (tiny) atlas: the `world` fixture, build_atlas on a small StyleGAN2 + tiny CLIP.

Every command with --json through click's CliRunner; bad input through main(), which must print one line.
"""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import VOCAB, query_error
from PIL import Image

from query import Atlas
from query.cli import cli, main


def run(world, *args, models=True):
    extra = ["--atlas", str(world["atlas"])]
    if models:
        extra += ["--generator", str(world["gen"]), "--clip", str(world["clip"])]
    result = CliRunner().invoke(cli, [*args, *extra, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_direction_json_matches_the_library(world):
    out = run(world, "direction", "red", "--beta", "0.05", models=False)
    d = Atlas.open(world["atlas"]).direction("red", beta=0.05)
    assert out["num_c"] == d.num_c > 0 and out["beta"] == 0.05 and out["neutral"] == "shape"
    assert [(t["layer"], t["channel"]) for t in out["top"]] == [(l, c) for l, c, _ in d.top(10)]
    out = run(world, "direction", "red:1 + blue:0.5", "--beta", "0.05", models=False)
    assert [c["prompt"] for c in out["components"]] == ["red", "blue"] and len(out["overlaps"]) == 1


def test_atlas_open_checks_models(world):
    from models.errors import AtlasFormatError
    from models.stylegan2 import small_generator

    atlas = Atlas.open(world["atlas"], generator=world["generator"], embedder=world["embedder"])
    assert len(atlas.channels) == atlas.relevance.shape[0] == 5 * 16  # the five conv layers of a 16 px model
    with pytest.raises(AtlasFormatError, match="generator"):
        Atlas.open(world["atlas"], generator=small_generator(seed=1, resolution=16, width=16))


def test_channels_lists_and_plots(world, tmp_path):
    plot = tmp_path / "layers.png"
    out = run(world, "channels", "green", "--beta", "auto", "-n", "5", "--plot", str(plot), models=False)
    scores = [abs(r["score"]) for r in out["channels"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == min(5, out["num_c"])
    assert {"layer", "resolution", "channel", "consistency", "labels"} <= set(out["channels"][0])
    assert Image.open(plot).format == "PNG"


def test_channel_words_and_grid(world, tmp_path):
    grid = tmp_path / "grid.png"
    out = run(world, "channel", "2", "5", "-k", "3", "-o", str(grid), "--cell", "16")
    atlas = Atlas.open(world["atlas"])
    assert [w["phrase"] for w in out["words"]] == [p for p, _ in atlas.channel_words(2, 5, 3)]
    img, lay = Image.open(grid), out["grid"]["layout"]
    assert img.size == (lay["x0"] + 5 * 16 + 4 * 2, lay["y0"] + 4 * 16 + 3 * 2)  # labels, 5 alphas x 4 seeds
    assert json.loads(img.text["seeds"]) == [0, 1, 2, 3] and json.loads(img.text["alphas"])[0] == -10.0


def test_similar_uses_the_vocabulary_index(world):
    out = run(world, "similar", "red", "-k", "3", models=False)
    phrases = [s["phrase"] for s in out["similar"]]
    cos = [s["cosine"] for s in out["similar"]]
    assert len(phrases) == 3 and "red" not in phrases and cos == sorted(cos, reverse=True)
    data = Atlas.open(world["atlas"]).data
    sims = data.vocab_embeddings @ data.vocab_embeddings[VOCAB.index("red")]
    assert phrases == [VOCAB[i] for i in np.argsort(-sims)[1:4]]


def test_sql_reads_and_refuses_writes(world, capsys):
    out = run(world, "sql", "SELECT layer, count(*) AS n FROM channels GROUP BY layer ORDER BY layer", models=False)
    assert [r["n"] for r in out["rows"]] == [16] * 5
    for statement in ("DROP TABLE channels", "INSERT INTO vocabulary VALUES (99, 'x')"):
        err = query_error(capsys, "sql", statement, "--atlas", str(world["atlas"]))
        assert "read-only" in err
    assert "SQL error" in query_error(capsys, "sql", "SELECT nothing FROM nowhere", "--atlas", str(world["atlas"]))


def test_edit_strip_records_its_settings(world, tmp_path):
    strip = tmp_path / "strip.png"
    out = run(
        world,
        "edit",
        "red",
        "--beta",
        "0.05",
        "--seed",
        "3",
        "--seed",
        "4",
        "--alpha",
        "-2:2:3",
        "--psi",
        "0.5",
        "-o",
        str(strip),
        "--cell",
        "16",
        "--save-frames",
        str(tmp_path / "frames"),
        "--save-latents",
        str(tmp_path / "codes.pt"),
    )
    img = Image.open(strip)
    lay = out["layout"]  # header and row labels, then original + 3 alphas, two seeds
    assert img.size == (lay["x0"] + 4 * 16 + 3 * 2, lay["y0"] + 2 * 16 + 2) and lay["y0"] > 0 and lay["x0"] > 0
    assert len(out["frames"]) == 8 and Image.open(out["frames"][0]).size == (16, 16)  # full resolution
    assert out["latents"]["space"] == "S" and (tmp_path / "codes.pt").exists()
    text = json.loads(img.text["styleatlas"])
    assert text["seeds"] == [3, 4] and text["psi"] == 0.5 and text["noise_mode"] == "const"
    assert text["alphas"] == [-2.0, 0.0, 2.0] and out["num_c"] == text["num_c"]
    zero = [c for c in out["changes"] if c["alpha"] == 0.0][0]
    assert zero["mean_abs_change"] < 1e-6 and out["changes"][0]["mean_abs_change"] > 1e-4


def test_edit_from_latent_files(world, tmp_path, capsys):
    gen = world["generator"]
    ws = gen.sample_ws(2, seed=9, psi=0.7)  # [2, w_dim]
    wplus = ws[:, None].expand(-1, gen.num_ws, -1).contiguous()
    torch.save(wplus, tmp_path / "wplus.pt")
    np.save(tmp_path / "w.npy", ws.numpy())
    for name in ("wplus.pt", "w.npy"):
        out = run(
            world,
            "edit",
            "blue",
            "--beta",
            "0.05",
            "--latent",
            str(tmp_path / name),
            "-o",
            str(tmp_path / f"{name}.png"),
        )
        assert out["latent_shape"][0] == 2
    a = np.asarray(Image.open(tmp_path / "wplus.pt.png"))
    b = np.asarray(Image.open(tmp_path / "w.npy.png"))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # W and its W+ broadcast edit alike
    torch.save(torch.zeros(2, 3, 5), tmp_path / "bad.pt")
    err = query_error(
        capsys,
        "edit",
        "red",
        "--latent",
        str(tmp_path / "bad.pt"),
        "--atlas",
        str(world["atlas"]),
        "--generator",
        str(world["gen"]),
        "-o",
        str(tmp_path / "x.png"),
    )
    assert "shape (2, 3, 5)" in err


def test_export_with_new_prompts_and_styleclip_layout(world, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("red\n\ngreen\na blue circle\nshape\n", encoding="utf-8")
    out_file = tmp_path / "lib.h5"
    out = run(world, "export", str(prompts), "-o", str(out_file), "--beta", "0.05", "--styleclip-layout")
    assert out["num_prompts"] == 4 and out["styleclip_layout"]
    assert [p["prompt"] for p in out["problems"]] == ["shape"]  # the neutral itself has no direction
    manifest = json.loads((tmp_path / "lib.h5.manifest.json").read_text())
    assert [p["source"] for p in manifest["prompts"]] == ["vocabulary", "vocabulary", "embedded", "neutral"]
    atlas = Atlas.open(world["atlas"], embedder=world["embedder"])
    with h5py.File(out_file, "r") as h5:
        np.testing.assert_allclose(
            h5["delta_s"][2], atlas.direction("a blue circle", beta=0.05).delta_s, rtol=1e-4, atol=1e-6
        )
        assert len(h5["styleclip"]) == len(atlas.data.layers) == 8
        assert not h5["styleclip/layer_01"][()].any()  # toRGB zero


def test_bad_input_is_one_line(world, tmp_path, capsys):
    atlas = ["--atlas", str(world["atlas"])]
    assert "empty" in query_error(capsys, "direction", "   ", *atlas)
    assert "beta" in query_error(capsys, "direction", "red", "--beta", "1.5", *atlas)
    assert "beta" in query_error(capsys, "direction", "red", "--beta", "0", *atlas)
    assert "use beta <=" in query_error(capsys, "direction", "red", "--beta", "0.99", *atlas)
    assert "alpha" in query_error(capsys, "edit", "red", "--alpha", "nan", *atlas)
    assert ".png" in query_error(
        capsys, "edit", "red", "--beta", "0.05", "-o", str(tmp_path / "e.jpg"), *atlas, "--generator", str(world["gen"])
    )
    assert "does not exist" in query_error(capsys, "direction", "red", "--atlas", str(tmp_path / "nope"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    assert "UTF-8" in query_error(capsys, "export", str(bad), "-o", str(tmp_path / "l.npz"), *atlas)
    err = query_error(capsys, "direction", "zebra", *atlas, "--clip", str(tmp_path / "missing.json"))
    assert "missing.json" in err and "not in the atlas vocabulary" in err and "'" in err.split("such as")[1]
    partial = tmp_path / "partial"
    shutil.copytree(world["atlas"], partial)
    (partial / "catalog.duckdb").unlink()
    manifest = json.loads((partial / "MANIFEST.json").read_text())
    manifest["complete"] = False
    (partial / "MANIFEST.json").write_text(json.dumps(manifest))
    assert "incomplete" in query_error(capsys, "direction", "red", "--atlas", str(partial))
    other = tmp_path / "other.pt"
    from models.stylegan2 import save_generator, small_generator

    save_generator(small_generator(seed=1, resolution=16, width=16), other)
    err = query_error(
        capsys, "edit", "red", "--beta", "0.05", *atlas, "--generator", str(other), "-o", str(tmp_path / "e.png")
    )
    assert "generator" in err and "built with" in err


def test_long_new_prompt_warns_in_one_line(world, capsys):
    main(
        [
            "direction",
            "a very " * 60 + "red circle",
            "--beta",
            "0.01",
            "--atlas",
            str(world["atlas"]),
            "--clip",
            str(world["clip"]),
        ]
    )  # returns: success
    captured = capsys.readouterr()
    assert "channels" in captured.out
    lines = [l for l in captured.err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning:") and "truncated" in lines[0]
