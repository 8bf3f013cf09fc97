"""StyleAtlas web page: explore an atlas in a browser (prompts, alpha / beta sliders, channels), served locally.

    styleatlas-serve --atlas atlas            # http://127.0.0.1:8765/
    app = serve.create_app(query.Atlas.open("atlas", generator=gen))   # any ASGI server, or TestClient

A layer above `query`: it reads atlases only through query.Atlas and shares the CLI's JSON builders.
"""

from serve.app import create_app

__all__ = ["create_app"]
