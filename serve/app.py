"""The Starlette app: one static page and JSON / PNG / .npy endpoints under /api/ (CONTRACT.md "Web page").

No SQL over HTTP: the catalog stays with the CLI. Every refusal is a 4xx JSON {"error": one line}.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from models.errors import AtlasError
from models.seeds import DEFAULT_PSI
from query.direction import DEFAULT_BETA
from query.report import channel_report, channels_report, direction_report
from serve import params as P
from serve.explorer import Explorer, picture, png_bytes
from serve.jobs import Jobs

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("styleatlas.serve")


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def json_response(obj, status: int = 200) -> Response:
    return Response(P.json_text(obj), status_code=status, media_type="application/json")


def create_app(atlas, noise_mode: str = "const") -> Starlette:
    """The web app over an opened query.Atlas (models loaded lazily by the atlas, as the CLI does)."""
    ex = Explorer(atlas, noise_mode=noise_mode)
    jobs = Jobs()

    def info(request: Request):
        data = atlas.data
        layers = [
            dict(
                index=int(l["index"]),
                kind=l["kind"],
                resolution=int(l["resolution"]),
                width=int(l["width"]),
                in_atlas=bool(l["in_atlas"]),
            )
            for l in data.layers
        ]
        return json_response(
            dict(
                atlas=str(data.path),
                name=Path(str(data.path)).name,
                neutral=data.neutral,
                num_channels=len(atlas.channels),
                vocab_size=len(data.vocab),
                num_templates=len(data.templates),
                resolution=max(l["resolution"] for l in layers),
                layers=layers,
                generator_fingerprint=data.generator_fingerprint,
                embedder_fingerprint=data.embedder_fingerprint,
                methods=list(P.METHODS),
                image_upload=True,
                sliders=dict(alpha=[-10, 10], beta=[0.08, 0.3], default_beta=DEFAULT_BETA, psi=DEFAULT_PSI),
                limits=dict(
                    prompt_chars=P.MAX_PROMPT_CHARS,
                    sources=P.MAX_SOURCES,
                    alphas=P.MAX_ALPHAS,
                    renders=P.MAX_RENDERS,
                    abs_alpha=P.MAX_ABS_ALPHA,
                    stack=P.MAX_STACK,
                    off=P.MAX_OFF,
                    upload_bytes=P.MAX_UPLOAD_BYTES,
                    cell=P.MAX_CELL,
                    optimize_steps=P.MAX_OPTIMIZE_STEPS,
                    invert_steps=P.MAX_INVERT_STEPS,
                ),
            )
        )

    def suggest(request: Request):
        q = request.query_params
        text = P.prompt_value(q.get("q"), "query")
        k = P.int_value(q.get("k"), "k", 10, 1, P.MAX_K)
        obj = dict(q=text, matches=ex.suggest(text, k), exact=bool(text) and atlas.vocab_index(text) is not None)
        if text and q.get("similar") in ("1", "true"):
            with ex.lock:
                obj["similar"] = [dict(phrase=p, cosine=s) for p, s in atlas.similar(text, k)]
        return json_response(obj)

    def direction(request: Request):
        q = request.query_params
        spec = P.edit_spec(q, required=True)
        d = ex.direction(*spec.key())
        show = P.int_value(q.get("show") or q.get("n"), "show", 10, 0, 100_000)
        return json_response(direction_report(atlas, d, show, q.get("full") in ("1", "true")))

    def channels(request: Request):
        """`channels --json` plus what the chart needs: every channel moved and the per-layer counts."""
        q = request.query_params
        spec = P.edit_spec(q, required=True)
        d = ex.direction(*spec.key())
        show = P.int_value(q.get("show"), "show", 2000, 0, 100_000)
        with ex.lock:
            obj = channels_report(atlas, d, show)
        rows = atlas.data.channels[d.active]  # [n, 2]
        obj["layers"] = [
            dict(
                index=int(l["index"]),
                resolution=int(l["resolution"]),
                up=int(((rows[:, 0] == l["index"]) & (d.delta_s[d.active] > 0)).sum()),
                down=int(((rows[:, 0] == l["index"]) & (d.delta_s[d.active] < 0)).sum()),
            )
            for l in atlas.data.layers
            if l["in_atlas"]
        ]
        obj["top_k"] = d.top_k
        obj["overlaps"] = d.overlaps
        return json_response(obj)

    def settings(view, sources, psi, **extra) -> dict:
        data = atlas.data
        return dict(
            atlas=str(data.path),
            generator_fingerprint=data.generator_fingerprint,
            embedder_fingerprint=data.embedder_fingerprint,
            method=view.method,
            edit=view.edit.to_dict(),
            stack=[s.to_dict() for s in view.stack],
            sources=[list(s) for s in sources],
            psi=psi,
            noise_mode=ex.noise_mode,
            **extra,
        )

    def png(picture_, text, filename, download):
        headers = {"Cache-Control": "private, max-age=600"}
        if download:
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return Response(
            png_bytes(picture_, text, compress_level=6 if download else 1), media_type="image/png", headers=headers
        )

    def image_options(q):
        return (
            P.sources_value(q),
            P.float_value(q.get("psi"), "psi", DEFAULT_PSI, -2.0, 2.0),
            P.int_value(q.get("size"), "size", None, 8, P.MAX_CELL),
            q.get("download") in ("1", "true"),
        )

    def edit_png(request: Request):
        """The images (one row, side by side) with the view's edit applied; no prompt and no stack: originals."""
        q = request.query_params
        view = P.view_value(q)
        _global_only(view)
        sources, psi, size, download = image_options(q)
        delta = ex.delta(view)  # [C]
        (images,) = ex.render(sources, psi, [delta])  # [B, 3, H, W]
        return png(picture([images], size), settings(view, sources, psi), _filename(view, "png"), download)

    def strip_png(request: Request):
        """Rows: images; columns: the current edit at every alpha, on top of the stacked edits."""
        q = request.query_params
        view = P.view_value(q)
        _global_only(view)
        alphas = P.alphas_value(q.get("alphas"))
        sources, psi, size, download = image_options(q)
        base = ex.delta(P.View(edit=P.EditSpec(), stack=view.stack))  # [C]
        unit = ex.delta(P.View(edit=_with_alpha(view.edit, 1.0))) if view.edit.prompt else base * 0
        columns = ex.render(sources, psi, [base + np.float32(a) * unit for a in alphas])  # A x [B, 3, H, W]
        return png(
            picture(_rows(columns), size),
            settings(view, sources, psi, alphas=alphas),
            _filename(view, "strip.png"),
            download,
        )

    def delta_npy(request: Request):
        """Σ alpha Δs [C] of the view as .npy (float32, rows in the order of /api/info's channels)."""
        view = P.view_value(request.query_params)
        buf = io.BytesIO()
        np.save(buf, ex.delta(view), allow_pickle=False)
        return Response(
            buf.getvalue(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{_filename(view, "npy")}"'},
        )

    def channels_npy(request: Request):
        """(layer, channel) [C, 2] int64: the row order of delta.npy."""
        buf = io.BytesIO()
        np.save(buf, np.asarray(atlas.data.channels, np.int64), allow_pickle=False)
        return Response(
            buf.getvalue(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": 'attachment; filename="channels.npy"'},
        )

    def channel(request: Request):
        layer, ch = _layer_channel(request)
        k = P.int_value(request.query_params.get("k"), "k", 10, 1, P.MAX_K)
        with ex.lock:
            return json_response(channel_report(atlas, layer, ch, k))

    def channel_strip(request: Request):
        """One channel alone on the original images: s_c + a sigma_c for a in -alpha..alpha (as `channel -o`)."""
        layer, ch = _layer_channel(request)
        q = request.query_params
        alpha = abs(P.alpha_value(q.get("alpha"), 10.0)) or 10.0
        steps = P.int_value(q.get("steps"), "steps", 5, 2, P.MAX_ALPHAS)
        sources, psi, size, download = image_options(q)
        with ex.lock:
            d = atlas.channel_direction(layer, ch)
        alphas = np.linspace(-alpha, alpha, steps).tolist()
        columns = ex.render(sources, psi, [np.float32(a) * d.delta_s for a in alphas])
        text = dict(
            atlas=str(atlas.data.path),
            layer=layer,
            channel=ch,
            alphas=alphas,
            psi=psi,
            sources=[list(s) for s in sources],
        )
        return png(picture(_rows(columns), size), text, f"channel_{layer}_{ch}.png", download)

    async def upload_latent(request: Request):
        """POST the bytes of a .npy / .pt file of W or W+ codes (?name=file.npy); at most MAX_UPLOAD_BYTES."""
        from starlette.concurrency import run_in_threadpool

        data = await _body(request, "a latent file", "the bytes of a .npy or .pt file of W or W+ codes")
        name = P.prompt_value(request.query_params.get("name") or "latent.npy", "file name")
        return json_response(await run_in_threadpool(ex.add_latent, data, name))

    def edit_job(request: Request):
        """POST: one edit by method=global|mapper|optimize|auto (atlas.edit_text) as a job -> 202 {id, ...}."""
        q = request.query_params
        view = P.view_value(q)
        spec = view.edit
        if not spec.prompt:
            raise P.RequestError("an edit needs a prompt.")
        if view.stack or spec.off:
            raise P.RequestError(
                "stacked edits and channels turned off apply to the global view only "
                "(GET /api/edit.png); POST /api/edit applies one edit."
            )
        sources, psi, size, _ = image_options(q)
        steps = P.int_value(q.get("steps"), "steps", 20, 1, P.MAX_OPTIMIZE_STEPS)
        for s in sources:
            if s[0] == "latent":
                ex.latent(s[1], s[2])  # 404 now, not as the job's error, when the upload is gone
        if view.method == "mapper":
            from query.mapper_store import atlas_mapper

            with ex.lock:
                if atlas_mapper(atlas, spec.prompt) is None:
                    raise P.RequestError(
                        f"no mapper is stored for {spec.prompt!r} in this atlas; train one with "
                        f"query.py mapper train, or choose global / optimize.",
                        status=404,
                    )
        total = steps if view.method in ("optimize", "auto") else 1

        def run(job):
            from query.edit_text import as_dict

            with ex.lock:
                ws = ex.source_ws(sources, psi)  # [B, num_ws, w_dim]
                result = atlas.edit_text(
                    ws,
                    spec.prompt,
                    method=view.method,
                    neutral=spec.neutral,
                    alpha=spec.alpha if spec.alpha else 4.0,
                    beta=spec.beta,
                    noise_mode=ex.noise_mode,
                    optimize_options=dict(steps=steps),
                    progress=job.progress,
                )
            job.step = job.total
            job.result = as_dict(result)
            job.png = png_bytes(
                picture([result.images], size),
                dict(settings(view, sources, psi, steps=steps), **job.result),
                compress_level=1,
            )

        job = jobs.start("edit", total, run)
        return json_response(job.to_dict(), status=202)

    async def upload_image(request: Request):
        """POST the bytes of a PNG / JPEG image (?name=x.png&steps=N): inverted into W+ as a job -> 202 {id, ...}."""
        from starlette.concurrency import run_in_threadpool

        data = await _body(request, "an image", "the bytes of a PNG or JPEG file")
        q = request.query_params
        name = P.prompt_value(q.get("name") or "image.png", "file name")
        steps = P.int_value(q.get("steps"), "steps", 100, 1, P.MAX_INVERT_STEPS)
        image = await run_in_threadpool(ex.read_image, data, name)  # [3, R, R]; 4xx now if it is no image

        def run(job):
            job.result = dict(latent=ex.invert_image(image, data, name, steps, job.progress))

        return json_response(jobs.start("invert", steps, run).to_dict(), status=202)

    def job_status(request: Request):
        return json_response(jobs.get(request.path_params["id"]).to_dict())

    def job_image(request: Request):
        job = jobs.get(request.path_params["id"])
        if job.png is None:
            raise P.RequestError(
                f"job {job.id} has no image ({job.status}).", status=409 if job.status != "done" else 404
            )
        return Response(job.png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})

    def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/suggest", suggest),
        Route("/api/direction", direction),
        Route("/api/channels", channels),
        Route("/api/edit.png", edit_png),
        Route("/api/strip.png", strip_png),
        Route("/api/delta.npy", delta_npy),
        Route("/api/channels.npy", channels_npy),
        Route("/api/channel/{layer}/{channel}", channel),
        Route("/api/channel/{layer}/{channel}/strip.png", channel_strip),
        Route("/api/latents", upload_latent, methods=["POST"]),
        Route("/api/edit", edit_job, methods=["POST"]),
        Route("/api/images", upload_image, methods=["POST"]),
        Route("/api/job/{id}", job_status),
        Route("/api/job/{id}/image.png", job_image),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def atlas_error(request, exc):
        return error(str(exc), getattr(exc, "status", 400))

    async def http_error(request, exc):
        detail = exc.detail if exc.status_code != 404 else f"no such page or endpoint: {request.url.path[:80]}"
        return error(detail, exc.status_code)

    async def server_error(request, exc):
        log.exception("unexpected error on %s", request.url.path)
        return error(f"internal error ({type(exc).__name__}); the server log has the details.", 500)

    app = Starlette(
        routes=routes, exception_handlers={AtlasError: atlas_error, HTTPException: http_error, Exception: server_error}
    )
    app.state.explorer = ex
    app.state.jobs = jobs
    return app


async def _body(request, what: str, send: str) -> bytes:
    """The request body, at most MAX_UPLOAD_BYTES (413 beyond, checked as it streams in)."""
    limit = P.MAX_UPLOAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared = int(declared)
        except ValueError:
            raise P.RequestError("Content-Length is not a number.") from None
        if declared > limit:
            raise P.RequestError(f"the upload is {declared:,} bytes; {what} may be at most {limit:,} bytes.", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise P.RequestError(f"the upload is more than {limit:,} bytes; {what} may be at most {limit:,}.", 413)
        chunks.append(chunk)
    if not size:
        raise P.RequestError(f"the upload is empty; send {send}.")
    return b"".join(chunks)


def _global_only(view) -> None:
    if view.method != "global":
        raise P.RequestError(
            f"method={view.method} edits run as jobs: POST /api/edit with the same parameters, "
            "then GET /api/job/{id}."
        )


def _layer_channel(request) -> tuple[int, int]:
    p = request.path_params
    return (P.int_value(p["layer"], "layer", 0, 0, 10_000), P.int_value(p["channel"], "channel", 0, 0, 1_000_000))


def _with_alpha(spec, alpha):
    from dataclasses import replace

    return replace(spec, alpha=alpha)


def _rows(columns):
    """alphas x [B, 3, H, W] -> B rows of [alphas, 3, H, W]."""
    import torch

    return [torch.stack([c[b] for c in columns]) for b in range(len(columns[0]))]


def _filename(view, ext: str) -> str:
    """A safe download name from the prompt: letters, digits and dashes only."""
    words = "".join(c if c.isalnum() else "-" for c in (view.edit.prompt or "original"))[:40].strip("-")
    return f"styleatlas_{words or 'edit'}_a{view.edit.alpha:g}.{ext}"
