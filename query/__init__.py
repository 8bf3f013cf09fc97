"""StyleAtlas query layer: global directions (SPEC §5), compositions, edits, channel exploration, bulk export.

atlas = query.Atlas.open("atlas")
d = atlas.direction("red", neutral="shape", beta=0.15)     # d.scores, d.delta_s, d.top(10)
images = atlas.edit(ws, d, alpha=4)                         # needs the generator
ws_edit = query.optimize(generator, embedder, ws, "circle")  # the slow fallback (SPEC §6)
ws_photo = query.invert(generator, images)                  # images -> W+ (SPEC §9)
"""

from query.atlas import Atlas
from query.checks import check_alpha, check_latent
from query.direction import AUTO_BETAS, DEFAULT_BETA, Direction, auto_betas, global_directions
from query.export import Library, compute_library, export_library
from query.prompts import nearest_phrases, parse_composition

__all__ = [
    "AUTO_BETAS",
    "Atlas",
    "DEFAULT_BETA",
    "Direction",
    "Library",
    "auto_betas",
    "check_alpha",
    "check_latent",
    "compute_library",
    "export_library",
    "global_directions",
    "invert",
    "nearest_phrases",
    "optimize",
    "parse_composition",
]
__all__ += ["EditResult", "Mapper", "load_mapper", "train_mapper"]

# the fallbacks need torch: imported on first use, so atlas-only commands stay torch-free (tests/test_cold_start.py)
_LAZY = {
    "EditResult": "query.edit_text",
    "Mapper": "query.mapper",
    "load_mapper": "query.mapper",
    "train_mapper": "query.mapper_train",
    "invert": "query.inversion",
    "optimize": "query.optimization",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'query' has no attribute {name!r}")
