"""The web page's slow edits as jobs (TestClient on the shapes-world atlas): the method selector (global / mapper /
optimize / auto through atlas.edit_text) with progress, image upload -> inversion -> a latent the page edits,
and one-line 4xx answers to bad requests. Few steps: seconds."""

import io
import threading
import time

import numpy as np
import pytest
import torch
from helpers import SHAPES_WORLD, image, pixels

pytest.importorskip("starlette", reason="the web extra is not installed (pip install -e '.[webtest]')")
pytestmark = SHAPES_WORLD  # the shapes-world atlas (conftest's `shapes`, `client`), cached under out/test_cache


def wait(c, started, timeout=120.0) -> dict:
    assert started.status_code == 202, started.text
    ident = started.json()["id"]
    deadline = time.time() + timeout
    while True:
        r = c.get(f"/api/job/{ident}")
        assert r.status_code == 200, r.text
        job = r.json()
        assert 0 <= job["step"] <= job["total"]
        if job["status"] in ("done", "error") or time.time() > deadline:
            return job
        time.sleep(0.05)


def png_of(images: torch.Tensor) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels(images)[0]).save(buf, format="PNG")
    return buf.getvalue()


def test_info_offers_every_method_and_image_upload(client):
    c, _, _ = client
    info = c.get("/api/info").json()
    assert info["methods"] == ["global", "mapper", "optimize", "auto"] and info["image_upload"] is True
    assert info["limits"]["optimize_steps"] >= 20 and info["limits"]["invert_steps"] >= 100


def test_optimize_job_reports_progress_and_matches_the_library(client):
    c, atlas, _ = client
    job = wait(c, c.post("/api/edit", params=dict(prompt="red", method="optimize", steps=3, seed=[1, 2])))
    assert job["status"] == "done", job
    assert job["step"] == job["total"] == 3 and job["method"] == "optimize"
    assert job["reason"] == "asked for optimization; optimized the latents"
    got = image(c.get(job["image"]))
    ws = atlas.sample_ws([1, 2], 0.7)
    want = atlas.edit_text(ws, "red", method="optimize", optimize_options=dict(steps=3), progress=False).images
    from serve.explorer import picture

    assert got.shape[1] > 2 * got.shape[0] - 8  # two images side by side
    diff = np.abs(got.astype(int) - picture([want]).astype(int))
    assert np.median(diff) == 0 and diff.mean() < 1.0, (diff.mean(), diff.max())  # Adam amplifies float order
    original = image(c.get("/api/edit.png", params=dict(seed=[1, 2])))
    assert np.abs(got.astype(int) - original.astype(int)).mean() > 0.5  # the optimization moved the images


def test_global_and_auto_jobs_name_the_method_and_reason(client):
    c, _, _ = client
    job = wait(c, c.post("/api/edit", params=dict(prompt="red", method="global", alpha=4, seed=3)))
    assert job["status"] == "done" and job["method"] == "global" and job["reason"] == "asked for the global direction"
    same = image(c.get("/api/edit.png", params=dict(prompt="red", alpha=4, seed=3)))
    assert np.abs(image(c.get(job["image"])).astype(int) - same.astype(int)).max() <= 1
    auto = wait(c, c.post("/api/edit", params=dict(prompt="red", method="auto", alpha=4, seed=3, steps=2)))
    assert auto["status"] == "done" and auto["method"] in ("global", "mapper", "optimize")
    assert "red" in auto["reason"] and "\n" not in auto["reason"]


def test_uploaded_image_is_inverted_into_a_latent_the_page_edits(client):
    c, atlas, _ = client
    target = atlas.render(atlas.sample_ws([5], 0.7))  # [1, 3, R, R]
    job = wait(c, c.post("/api/images", params=dict(name="face.png", steps=6), content=png_of(target)))
    assert job["status"] == "done", job
    assert job["kind"] == "invert" and job["step"] == job["total"] == 6
    latent = job["latent"]
    assert latent["count"] == 1 and latent["shape"][0] == 1 and latent["name"] == "face.png"
    assert np.isfinite(latent["psnr"]) and latent["psnr"] > 5
    edited = image(c.get("/api/edit.png", params=dict(prompt="red", alpha=4, latent=f"{latent['id']}:0")))
    original = image(c.get("/api/edit.png", params=dict(latent=f"{latent['id']}:0")))
    assert edited.shape == original.shape and np.abs(edited.astype(int) - original.astype(int)).mean() > 0.5


BAD = [
    ("/api/edit", dict(prompt="red", method="magic", seed=1), b"", 400, "not one of"),
    ("/api/edit", dict(prompt="no such mapper", method="mapper", seed=1), b"", 404, "no mapper is stored"),
    ("/api/edit", dict(method="optimize", seed=1), b"", 400, "needs a prompt"),
    ("/api/edit", dict(prompt="red", method="optimize", latent="feedbeef:0"), b"", 404, "upload"),
    ("/api/edit", dict(prompt="red", method="optimize", steps=10_000, seed=1), b"", 400, "steps"),
    ("/api/edit", dict(prompt="red", method="optimize", off="1:0", seed=1), b"", 400, "global view only"),
    ("/api/images", dict(name="x.png"), b"certainly not an image", 400, "not a readable image"),
    ("/api/images", dict(name="x.png"), b"", 400, "empty"),
    ("/api/images", dict(name="x.png", steps=0), b"x", 400, "steps"),
]


@pytest.mark.parametrize("url, params, body, status, words", BAD, ids=[b[4] for b in BAD])
def test_bad_job_requests_get_one_line_4xx(client, url, params, body, status, words):
    c, _, _ = client
    r = c.post(url, params=params, content=body)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in message


def test_more_bad_requests(client):
    from PIL import Image

    c, _, _ = client
    huge = c.post("/api/images", params=dict(name="x.png"), content=b"\0" * ((16 << 20) + 1))
    assert huge.status_code == 413 and "at most" in huge.json()["error"]
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    gif = c.post("/api/images", params=dict(name="x.gif"), content=buf.getvalue())
    assert gif.status_code == 400 and "PNG or JPEG" in gif.json()["error"]
    r = c.get("/api/edit.png", params=dict(prompt="red", method="optimize"))
    assert r.status_code == 400 and "POST /api/edit" in r.json()["error"]
    assert c.get("/api/job/feedbeef").status_code == 404
    assert c.get("/api/job/feedbeef/image.png").status_code == 404


def test_jobs_are_bounded_and_errors_are_one_line():
    from models.errors import AtlasError
    from serve.jobs import Jobs
    from serve.params import RequestError

    jobs, gate = Jobs(max_pending=2), threading.Event()
    first = jobs.start("edit", 1, lambda job: gate.wait(10))
    second = jobs.start("edit", 1, lambda job: (_ for _ in ()).throw(AtlasError("bad\nthing")))
    with pytest.raises(RequestError, match="already running or waiting") as refused:
        jobs.start("edit", 1, lambda job: None)
    assert refused.value.status == 429
    gate.set()
    deadline = time.time() + 10
    while second.status not in ("done", "error") and time.time() < deadline:
        time.sleep(0.01)
    assert first.status == "done" and second.status == "error" and second.error == "bad thing"


def test_mapper_job_uses_the_mapper_stored_in_a_copy_of_the_atlas(shapes, tmp_path):
    import shutil

    from starlette.testclient import TestClient

    from query import Atlas
    from query.mapper_store import store_mapper
    from query.mapper_train import train_mapper
    from serve import create_app

    atlas, path = shapes
    copy = Atlas.open(shutil.copytree(path, tmp_path / "atlas"), generator=atlas.generator, embedder=atlas.embedder)
    mapper = train_mapper(copy.generator, copy.embedder, "red", steps=2, batch_size=2, num_latents=8, progress=False)
    store_mapper(copy, mapper)
    c = TestClient(create_app(copy), raise_server_exceptions=False)
    job = wait(c, c.post("/api/edit", params=dict(prompt="red", method="mapper", seed=[1, 2])))
    assert job["status"] == "done" and job["method"] == "mapper", job
    assert job["reason"].startswith("asked for the mapper; used the mapper stored for 'red'")
    from serve.explorer import picture

    want = copy.edit_text(copy.sample_ws([1, 2], 0.7), "red", method="mapper").images
    assert np.abs(image(c.get(job["image"])).astype(int) - picture([want]).astype(int)).max() <= 1
