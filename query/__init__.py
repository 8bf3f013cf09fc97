"""StyleAtlas query layer: global directions (SPEC §5), compositions, edits, channel exploration, bulk export.

    atlas = query.Atlas.open("atlas")
    d = atlas.direction("red", neutral="shape", beta=0.15)     # d.scores, d.delta_s, d.top(10)
    images = atlas.edit(ws, d, alpha=4)                         # needs the generator
"""
from query.atlas import Atlas, check_alpha, check_latent
from query.direction import AUTO_BETAS, DEFAULT_BETA, Direction, auto_betas, global_directions
from query.edit_text import EditResult
from query.export import Library, compute_library, export_library
from query.mapper import Mapper, load_mapper
from query.mapper_train import train_mapper
from query.prompts import nearest_phrases, parse_composition

__all__ = ["AUTO_BETAS", "Atlas", "DEFAULT_BETA", "Direction", "Library", "auto_betas", "check_alpha", "check_latent",
           "compute_library", "export_library", "global_directions", "nearest_phrases", "parse_composition"]
__all__ += ["EditResult", "Mapper", "load_mapper", "train_mapper"]
