"""The web API (Starlette TestClient) on the shapes-world atlas: the same numbers and images as the library and
the CLI, stacked edits and channels turned off, latent uploads, and one-line 4xx answers to bad requests."""

import io
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SHAPES_WORLD, image, pixels

from models.errors import AtlasError

pytest.importorskip("starlette", reason="the web extra is not installed (pip install -e '.[webtest]')")
pytestmark = SHAPES_WORLD  # the shapes-world atlas (conftest's `shapes`, `client`), cached under out/test_cache


def cli_json(path, *args):
    from click.testing import CliRunner

    from query.cli import cli

    result = CliRunner().invoke(cli, [*args, "--atlas", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_page_and_info_are_served(client):
    c, atlas, _ = client
    page = c.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    for asset in (
        "/",
        "/static/app.js",
        "/static/channels.js",
        "/static/suggest.js",
        "/static/jobs.js",
        "/static/style.css",
    ):
        r = c.get(asset)
        assert r.status_code == 200 and len(r.text) > 400
        urls = re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"']*", r.text.replace("http://www.w3.org/2000/svg", ""))
        assert not urls, f"{asset} refers to another host: {urls}"  # no CDN: works offline
    info = c.get("/api/info").json()
    assert info["neutral"] == "shape" and info["num_channels"] == len(atlas.channels)
    assert info["methods"] == ["global", "mapper", "optimize", "auto"] and info["resolution"] == 32


def test_direction_and_channel_answers_are_the_cli_json(client):
    c, atlas, path = client
    assert c.get("/api/direction", params=dict(prompt="red", beta="auto")).json() == cli_json(
        path, "direction", "red", "--beta", "auto"
    )
    layer, channel, _ = atlas.direction("red", beta="auto").top(1)[0]
    assert c.get(f"/api/channel/{layer}/{channel}").json() == cli_json(path, "channel", str(layer), str(channel))
    rows = c.get("/api/channels", params=dict(prompt="red", beta="auto", show=20)).json()
    cli = cli_json(path, "channels", "red", "--beta", "auto")
    assert rows["channels"] == cli["channels"] and rows["num_c"] == cli["num_c"]
    layers = {l["index"]: l["up"] + l["down"] for l in rows["layers"]}
    assert sum(layers.values()) == rows["num_c"]


def test_edit_png_is_the_library_edit(client):
    c, atlas, _ = client
    d = atlas.direction("red", beta="auto")
    # one seed at a time, as the server samples them: a batch of two maps z to w with other float rounding, and
    # a pixel near a rounding edge of uint8 can then come out one level apart
    ws = torch.cat([atlas.sample_ws([seed], psi=0.7) for seed in (1, 2)])
    got = image(c.get("/api/edit.png", params=dict(prompt="red", beta="auto", alpha=4, seed=1)))
    assert np.array_equal(got, pixels(atlas.edit(ws[:1], d, 4.0))[0])
    assert np.array_equal(got, image(c.get("/api/edit.png", params=dict(prompt="red", beta="auto", seed=1))))
    row = image(
        c.get(
            "/api/edit.png", params=[("prompt", "red"), ("beta", "auto"), ("alpha", "4"), ("seed", "1"), ("seed", "2")]
        )
    )
    assert row.shape == (32, 2 * 32 + 2, 3) and np.array_equal(row[:, 34:], pixels(atlas.edit(ws[1:], d, 4.0))[0])
    original = image(c.get("/api/edit.png", params=dict(seed=1)))
    assert np.array_equal(original, pixels(atlas.render(ws[:1]))[0])
    assert not np.array_equal(original, got)
    big = image(c.get("/api/edit.png", params=dict(seed=1, size=64)))
    assert big.shape == (64, 64, 3) and np.array_equal(big[::2, ::2], original)


def test_channels_off_and_stacked_edits(client):
    c, atlas, _ = client
    d = atlas.direction("red", beta="auto")
    base = dict(prompt="red", beta="auto", seed=1)
    off = ",".join(f"{l}:{ch}" for l, ch in (atlas.channels[r] for r in d.active))
    original = image(c.get("/api/edit.png", params=dict(seed=1)))
    assert np.array_equal(image(c.get("/api/edit.png", params=dict(base, alpha=6, off=off))), original)

    def delta(**params):
        r = c.get("/api/delta.npy", params=params)
        assert r.status_code == 200, r.text
        return np.load(io.BytesIO(r.content), allow_pickle=False)

    assert np.allclose(delta(prompt="red", beta="auto", alpha=4), 4 * d.delta_s)
    stack = json.dumps([dict(prompt="red", beta="auto", alpha=4)])
    assert np.allclose(delta(prompt="red", beta="auto", alpha=2, stack=stack), 6 * d.delta_s, atol=1e-6)
    one_off = delta(prompt="red", beta="auto", alpha=4, off=off.split(",")[0])
    assert np.count_nonzero(one_off) == d.num_c - 1
    # an accepted edit stays when the current prompt changes: red at 4 under circle at 0 is red at 4
    stacked = image(c.get("/api/edit.png", params=dict(prompt="circle", alpha=0, stack=stack, seed=1)))
    assert np.array_equal(stacked, image(c.get("/api/edit.png", params=dict(base, alpha=4))))
    channels = np.load(io.BytesIO(c.get("/api/channels.npy").content))
    assert channels.tolist() == [list(ch) for ch in atlas.channels]


def test_alpha_and_channel_strips(client):
    c, atlas, path = client
    strip = image(
        c.get(
            "/api/strip.png",
            params=[("prompt", "red"), ("beta", "auto"), ("alphas", "-4,0,4"), ("seed", "1"), ("seed", "2")],
        )
    )
    assert strip.shape == (2 * 32 + 2, 3 * 32 + 4, 3)
    assert np.array_equal(strip[:32, 34:66], image(c.get("/api/edit.png", params=dict(seed=1))))
    layer, channel, _ = atlas.direction("red", beta="auto").top(1)[0]
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/grid.png"
        lay = cli_json(path, "channel", str(layer), str(channel), "-o", out, "--seed", "1", "--cell", "32")["grid"][
            "layout"
        ]
        cli_grid = np.asarray(Image.open(out).convert("RGB"))[lay["y0"] :, lay["x0"] :]  # the cells, not the labels
    ours = image(c.get(f"/api/channel/{layer}/{channel}/strip.png", params=dict(seed=1, alpha=10, steps=5)))
    assert np.array_equal(ours, cli_grid)


def test_latent_uploads(client):
    c, atlas, _ = client
    ws = atlas.sample_ws([1, 2], psi=0.7)  # [2, w_dim]
    buf = io.BytesIO()
    np.save(buf, ws.numpy())
    up = c.post("/api/latents", params=dict(name="two.npy"), content=buf.getvalue()).json()
    assert up["count"] == 2 and up["shape"] == list(ws.shape)
    params = dict(prompt="red", beta="auto", alpha=4)
    assert np.array_equal(
        image(c.get("/api/edit.png", params=dict(params, latent=f"{up['id']}:1"))),
        image(c.get("/api/edit.png", params=dict(params, seed=2))),
    )
    gen = atlas.generator
    plus = ws[:1, None].repeat(1, int(gen.num_ws), 1)  # W+ [1, num_ws, w_dim]
    buf = io.BytesIO()
    torch.save(plus, buf)
    up = c.post("/api/latents", params=dict(name="one.pt"), content=buf.getvalue()).json()
    assert up["shape"] == [1, int(gen.num_ws), int(gen.w_dim)]
    assert np.array_equal(
        image(c.get("/api/edit.png", params=dict(params, latent=f"{up['id']}:0"))),
        image(c.get("/api/edit.png", params=dict(params, seed=1))),
    )


def test_suggestions_from_the_vocabulary(client):
    c, atlas, _ = client
    s = c.get("/api/suggest", params=dict(q="re")).json()
    assert s["matches"][0] == "red" and not s["exact"]
    assert all("re" in m.lower() for m in s["matches"])
    s = c.get("/api/suggest", params=dict(q="red", similar=1, k=5)).json()
    assert s["exact"] and len(s["similar"]) == 5 and "red" not in [p["phrase"] for p in s["similar"]]
    assert [p["phrase"] for p in s["similar"]] == [p for p, _ in atlas.similar("red", 5)]


def _chunks(total, size=1 << 20):
    for _ in range(total // size):
        yield b"\0" * size


BAD = [
    ("get", "/api/edit.png", dict(prompt="x" * 10_000, alpha=4), 400, "at most 300"),
    ("get", "/api/direction", dict(prompt="red", beta="nan"), 400, "beta"),
    ("get", "/api/edit.png", dict(prompt="red", alpha="nan"), 400, "alpha must be a finite number"),
    ("get", "/api/edit.png", dict(prompt="red", alpha="1e9"), 400, "alpha must be between"),
    ("get", "/api/edit.png", dict(seed=",".join(["7"] * 10_000)), 400, "at most 16"),
    ("get", "/api/edit.png", dict(seed="-3"), 400, "seed"),
    ("get", "/api/edit.png", dict(prompt="red", psi="inf"), 400, "psi"),
    ("get", "/api/strip.png", dict(prompt="red", alphas="-10:10:100000"), 400, "alphas"),
    ("get", "/api/edit.png", dict(prompt="red", stack="[{"), 400, "stack"),
    ("get", "/api/edit.png", dict(prompt="red", stack=json.dumps([dict(prompt="red", alpha=1)] * 9)), 400, "at most 8"),
    ("get", "/api/edit.png", dict(prompt="red", off="3:x"), 400, "layer:channel"),
    ("get", "/api/edit.png", dict(prompt="red", alpha=1, off="1:0"), 400, "not in this atlas"),
    ("get", "/api/channel/99/0", {}, 400, "not in this atlas"),
    ("get", "/api/channel/x/0", {}, 400, "layer"),
    ("get", "/api/direction", dict(prompt="red", beta="0.99"), 400, "no channel passes"),
    ("get", "/api/direction", dict(prompt=" "), 400, "empty"),
    ("get", "/api/edit.png", dict(prompt="red", method="mapper"), 400, "POST /api/edit"),
    ("get", "/api/edit.png", dict(latent="feedbeef:0"), 404, "upload"),
    ("get", "/api/sql", dict(q="SELECT 1"), 404, "no such"),
    ("post", "/api/edit.png", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("method, url, params, status, words", BAD, ids=[f"{b[1]}-{b[4]}" for b in BAD])
def test_bad_requests_get_a_one_line_4xx(client, method, url, params, status, words):
    c, _, _ = client
    r = getattr(c, method)(url, params=params)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in message


class Evil:
    """A pickle that runs code when loaded (here: flips a flag); uploads are read with weights_only."""

    ran = False

    def __reduce__(self):
        return exec, ("import test_serve_api; test_serve_api.Evil.ran = True",)


# torch's weights_only loader warns about the evil pickle's protocol (4) before it refuses the file
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_uploads_are_limited(client):
    c, _, _ = client
    r = c.post("/api/latents", headers={"content-length": str(1 << 30)}, content=b"\0" * 64)  # says 1 GB
    assert r.status_code == 413 and "at most" in r.json()["error"]
    r = c.post("/api/latents", content=_chunks(17 << 20))  # streamed, no length given
    assert r.status_code == 413 and "at most" in r.json()["error"]
    r = c.post("/api/latents", params=dict(name="evil.pt"), content=pickle.dumps(Evil()))
    assert r.status_code == 400 and "\n" not in r.json()["error"] and not Evil.ran  # never unpickled
    r = c.post("/api/latents", params=dict(name="w.npy"), content=b"not numpy")
    assert r.status_code == 400
    r = c.post("/api/latents", params=dict(name="w.exe"), content=b"x")
    assert r.status_code == 400 and ".npy or .pt" in r.json()["error"]


def test_serve_binds_localhost_unless_told(monkeypatch, shapes):
    import uvicorn
    from click.testing import CliRunner

    from serve.cli import cli

    _, path = shapes
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    assert CliRunner().invoke(cli, ["--atlas", str(path)]).exit_code == 0
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8765
    result = CliRunner().invoke(cli, ["--atlas", str(path), "--host", "0.0.0.0", "--port", "9000"])
    assert calls[-1]["host"] == "0.0.0.0" and "reachable from the network" in result.output
    result = CliRunner().invoke(cli, ["--atlas", str(Path(path) / "nope")])
    assert isinstance(result.exception, AtlasError) and not calls[2:]


def test_serve_help_from_a_checkout():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "serve", "--help"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "--atlas" in out.stdout and "127.0.0.1" in out.stdout, out.stderr
