"""`styleatlas-serve --atlas DIR [--port N] [--host H]`: the local web page over one atlas (uvicorn)."""

from __future__ import annotations

from pathlib import Path

import click

from models.cli import device_option, emit, json_option, print_warnings, run_cli
from models.errors import AtlasError

LOCAL = "127.0.0.1"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--atlas",
    type=click.Path(path_type=Path),
    default=Path("atlas"),
    show_default=True,
    help="Atlas folder (built by build_index.py).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="TCP port.")
@click.option(
    "--host",
    default=LOCAL,
    show_default=True,
    help="Address to bind; anything but 127.0.0.1 / localhost exposes the page to the network.",
)
@click.option("--generator", default=None, help='Generator checkpoint or "demo" (default: the atlas\'s, else demo).')
@click.option("--clip", default=None, help='CLIP model name, JSON config or "demo" (default: the atlas\'s, else demo).')
@click.option("--pretrained", default=None, help="open_clip pretrained tag or local weights.")
@device_option()
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
@json_option("Print the address as JSON before serving.")
@click.pass_context
def cli(ctx, atlas, port, host, generator, clip, pretrained, device, threads, as_json):
    """Serve a page to explore ATLAS: prompts with suggestions, alpha / beta sliders, the channels an edit moves.

    Binds 127.0.0.1 unless --host says otherwise; works offline (no CDN). Ctrl-C stops it.
    """
    print_warnings(ctx)
    try:
        import uvicorn
    except ImportError:
        raise AtlasError('the web page needs uvicorn and starlette; pip install "styleatlas[web]".') from None
    import torch

    from query.opening import open_atlas
    from serve.app import create_app

    if threads:
        torch.set_num_threads(threads)
    opened = open_atlas(dict(atlas=atlas, generator=generator, clip=clip, pretrained=pretrained, device=device))
    app = create_app(opened)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    where = "" if host in (LOCAL, "localhost", "::1") else f"  (bound to {host}: reachable from the network)"
    emit(
        as_json, dict(url=url, host=host, port=port, atlas=str(atlas)), [f"StyleAtlas page for {atlas} on {url}{where}"]
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def main(args=None):
    run_cli(cli, args)


if __name__ == "__main__":
    main()
