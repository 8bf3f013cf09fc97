"""Edit strips and channel grids a person can read: a header, column and row labels, filled cells; the frames at
full resolution and the edited style codes beside them (planted colour generator: each image is one colour)."""

import json

import numpy as np
import pytest
import torch
from helpers import PlantedColourGenerator, planted_data
from PIL import Image

from query import Atlas
from query.edit import channel_grid, edit_strip
from query.media import image_grid, to_uint8

WHITE = 255


@pytest.fixture
def atlas():
    return Atlas(planted_data(), generator=PlantedColourGenerator(), check_fingerprints=False)


def inked(region: np.ndarray) -> bool:
    """Some text was drawn here (dark pixels on the white paper)."""
    return bool((region.min(-1) < 128).any())


@pytest.mark.parametrize("cell", [12, 16, 5])  # 8 px images: a non-integer upscale, an integer one, a shrink
def test_cells_are_filled(cell):
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    grid = image_grid([images], cell=cell, gap=2)
    assert grid.shape == (cell, 2 * cell + 2, 3)
    flat = torch.full((1, 3, 8, 8), -1.0)  # a black image fills its whole cell: no white band
    assert (image_grid([flat], cell=cell) == 0).all()


def test_strip_has_header_labels_and_filled_cells(atlas, tmp_path):
    d = atlas.direction("red", beta=0.2)
    out = edit_strip(
        atlas,
        d,
        tmp_path / "strip.png",
        [-3, 3],
        seeds=[1, 2, 5],
        cell=20,
        frames=tmp_path / "frames",
        latents=tmp_path / "codes.npz",
    )
    picture = np.asarray(Image.open(tmp_path / "strip.png").convert("RGB"))
    lay = out["layout"]
    assert lay == json.loads(Image.open(tmp_path / "strip.png").text["styleatlas"])["layout"]
    h, w, g = lay["cell_h"], lay["cell_w"], lay["gap"]
    assert picture.shape == (lay["y0"] + 3 * h + 2 * g, lay["x0"] + 3 * w + 2 * g, 3)
    assert inked(picture[: lay["y0"] // 2])  # the header row (prompt, neutral, beta, method)
    ws = atlas.sample_ws([1, 2, 5], 0.7)
    columns = [atlas.render(ws)] + [atlas.edit(ws, d, a) for a in (-3, 3)]
    for j in range(3):
        x = lay["x0"] + j * (w + g)
        assert inked(picture[lay["y0"] - 14 : lay["y0"], x : x + w])  # a label over every column
        for i in range(3):
            y = lay["y0"] + i * (h + g)
            if j == 0:
                assert inked(picture[y : y + h, : lay["x0"]])  # a label beside every row (seed)
            cell = picture[y : y + h, x : x + w].reshape(-1, 3)
            assert (cell == to_uint8(columns[j][i : i + 1])[0, 0, 0]).all()  # the whole cell is the image
    assert out["method"] == "global" and out["seeds"] == [1, 2, 5]

    # every frame at full resolution, named by row and column
    assert len(out["frames"]) == 9 and out["frames"][4].endswith("seed2_alpha-3.png")
    frame = np.asarray(Image.open(tmp_path / "frames" / "seed5_alpha+3.png").convert("RGB"))
    assert np.array_equal(frame, to_uint8(columns[2][2:3])[0])

    # the edited S codes re-render the edited images
    codes = np.load(tmp_path / "codes.npz")
    assert str(codes["space"]) == "S" and codes["alphas"].tolist() == [-3.0, 3.0]
    styles = [torch.from_numpy(codes[f"style_{layer:02d}"][:, 1]) for layer in range(len(atlas.data.layers))]
    assert codes["style_00"].shape == (3, 2, atlas.data.layers[0]["width"])
    assert torch.allclose(atlas.generator.synthesize(styles), columns[2], atol=1e-6)


def test_channel_grid_labels_and_frames(atlas, tmp_path):
    out = channel_grid(
        atlas, 0, 2, tmp_path / "grid.png", alpha=4, steps=3, seeds=[0, 1], cell=24, frames=tmp_path / "frames"
    )
    picture = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    lay = out["layout"]
    assert inked(picture[: lay["y0"] // 2]) and inked(picture[lay["y0"] :, : lay["x0"]])
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == sorted(
        f"seed{s}_alpha{a}.png" for s in (0, 1) for a in ("-4", "0", "+4")
    )
    assert Image.open(tmp_path / "frames" / "seed1_alpha+4.png").size == (8, 8)


def test_save_latents_pt_and_bad_suffix(atlas, tmp_path):
    from models.errors import AtlasError

    d = atlas.direction("green", beta=0.2)
    out = edit_strip(atlas, d, tmp_path / "s.png", [2], seeds=[0], cell=8, latents=tmp_path / "codes.pt")
    saved = torch.load(tmp_path / "codes.pt", weights_only=True)
    assert saved["space"] == "S" and len(saved["styles"]) == len(atlas.data.layers)
    assert out["latents"]["path"].endswith("codes.pt")
    with pytest.raises(AtlasError, match=".pt or .npz"):
        edit_strip(atlas, d, tmp_path / "s.png", [2], seeds=[0], latents=tmp_path / "codes.txt")
