"""Shared test set-up: offline model hubs, two threads, the `slow` marker, and the fixtures several files use.

The one place the tests set HF_HUB_OFFLINE: subprocesses inherit it. Plain helpers are in helpers.py."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import build_planted, build_world, open_shapes_atlas, tiny_clip_config  # noqa: E402

torch.set_num_threads(2)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes more than about 10 s on two CPU cores (deselect with -m 'not slow')"
    )


@pytest.fixture(scope="session")
def tiny_clip():
    """A seeded random tiny ClipEmbedder (frozen, eval); share it, do not train it."""
    from models.clip import load_clip

    return load_clip(tiny_clip_config(), seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module: as the subprocesses (float results agree bit for bit), and on two busy
    shared cores small ops and batched backward passes run faster than with two contending threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """helpers.build_world for this module alone: its tests may write into the atlas (mappers, exports)."""
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def shared_world(tmp_path_factory):
    """helpers.build_world once per session: tests copy the atlas before changing anything in it."""
    return build_world(tmp_path_factory.mktemp("shared_world"))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted atlas (helpers.build_planted) opened with its generator and embedder, for this module."""
    from helpers import MeanColourEmbedder, PlantedGenerator

    from query import Atlas

    out = build_planted(tmp_path_factory.mktemp("planted_query") / "atlas")
    return Atlas.open(out, generator=PlantedGenerator(), embedder=MeanColourEmbedder())


@pytest.fixture(scope="module")
def shapes():
    """(Atlas, folder) of the shapes world (helpers.open_shapes_atlas); files using it set
    `pytestmark = SHAPES_WORLD`, which skips them without the trained demo models."""
    return open_shapes_atlas()


@pytest.fixture(scope="module")
def client(shapes):
    """(Starlette TestClient of the web app, Atlas, atlas folder) on the shapes world."""
    pytest.importorskip("starlette", reason="the web extra is not installed (pip install -e '.[webtest]')")
    from starlette.testclient import TestClient

    from serve import create_app

    atlas, path = shapes
    return TestClient(create_app(atlas), raise_server_exceptions=False), atlas, path
