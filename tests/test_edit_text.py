"""atlas.edit_text picks the method: the global direction where it works, else a stored mapper, else optimization;
and the CLI around it (mapper train / list, edit --method, compare). Planted and tiny worlds (conftest's `planted`
and `world`), seconds."""

import json

import pytest
import torch
from click.testing import CliRunner

from models.errors import AtlasError


def test_auto_takes_the_global_direction_where_it_moves_the_images(planted):
    ws = planted.sample_ws(range(8), psi=0.7)
    result = planted.edit_text(ws, "red", alpha=3.0, beta=0.1)
    assert result.method == "global" and "moves these images toward 'red'" in result.reason
    assert torch.equal(result.images, planted.edit(ws, planted.direction("red", beta=0.1), 3.0))
    assert result.details["median_rank_after"] <= result.details["max_rank"]
    assert (result.images[:, 0].mean((1, 2)) > planted.render(ws)[:, 0].mean((1, 2))).all()


def test_global_and_mapper_on_request_and_the_fallback_order(planted):
    from query.mapper_store import store_mapper
    from query.mapper_train import train_mapper

    ws = planted.sample_ws(range(4), psi=0.7)
    assert planted.edit_text(ws, "red", method="global", beta=0.1).reason == "asked for the global direction"
    with pytest.raises(AtlasError, match="no mapper is stored for 'green'"):
        planted.edit_text(ws, "green", method="mapper")
    with pytest.raises(AtlasError, match="method must be one of"):
        planted.edit_text(ws, "green", method="magic")

    mapper = train_mapper(
        planted.generator,
        planted.embedder,
        "green",
        steps=30,
        batch_size=8,
        num_latents=64,
        norm="channels",
        progress=False,
    )
    store_mapper(planted, mapper)
    from helpers import MeanColourEmbedder, PlantedGenerator

    from query import Atlas

    Atlas.open(planted.data.path, generator=PlantedGenerator(), embedder=MeanColourEmbedder())  # still verifies
    by_mapper = planted.edit_text(ws, "green", method="mapper")
    assert by_mapper.method == "mapper" and by_mapper.ws.shape == (4, 1, 8)
    gen = planted.generator
    with torch.no_grad():
        assert torch.equal(by_mapper.images, gen.synthesize(gen.styles(mapper(ws))))
    # a global direction that fails the test (here: a test nothing passes) hands over to the stored mapper
    fallback = planted.edit_text(ws, "green", beta=0.1, max_rank=-1.0)
    assert fallback.method == "mapper" and "does not move these images toward 'green'" in fallback.reason
    assert "used the mapper stored for 'green'" in fallback.reason


def test_without_a_mapper_auto_falls_back_to_optimization(planted):
    ws = planted.sample_ws(range(2), psi=0.7)
    result = planted.edit_text(ws, "blue", beta=0.1, max_rank=-1.0, optimize_options=dict(steps=3))
    assert result.method == "optimize" and "no mapper is stored for it" in result.reason
    assert result.ws.shape == (2, 1, 8)


# ---------------------------------------------------------------- CLI on a tiny real atlas
def options(world):
    return ["--atlas", str(world["atlas"]), "--generator", str(world["gen"]), "--clip", str(world["clip"]), "--json"]


def cli_json(*args):
    from query.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_mapper_train_list_edit_and_compare(world, tmp_path):
    from query.cli import main

    world = options(world)
    record = cli_json("mapper", "train", "red", "--steps", "2", "--batch-size", "2", *world)
    assert record["prompt"] == "red" and record["steps"] == 2 and record["file"].startswith("mappers/")
    listed = cli_json("mapper", "list", *world)
    assert [m["prompt"] for m in listed["mappers"]] == ["red"]
    assert json.loads(json.dumps(cli_json("sql", "SELECT prompt, steps FROM mappers", *world)))["rows"] == [
        dict(prompt="red", steps=2)
    ]

    strip = cli_json(
        "edit", "red", "--method", "mapper", "--seed", "1", "--seed", "2", "-o", str(tmp_path / "m.png"), *world
    )
    assert strip["method"] == "mapper" and strip["reason"].startswith("asked for the mapper")
    assert strip["seeds"] == [1, 2] and (tmp_path / "m.png").exists()

    report = cli_json(
        "compare", "red", "--seed", "3", "--methods", "global,mapper", "-o", str(tmp_path / "c.png"), *world
    )
    assert [m["method"] for m in report["methods"]] == ["global", "mapper"]
    for m in report["methods"]:
        assert {"clip_before", "clip_after", "mean_abs_change", "seconds_per_image"} <= set(m)
    assert report["columns"] == ["original", "global", "mapper"]

    with pytest.raises(SystemExit) as exit_info:
        main(["edit", "green", "--method", "mapper", "-o", str(tmp_path / "x.png"), *world])
    assert exit_info.value.code == 2
