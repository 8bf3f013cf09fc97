"""StyleAtlas pipeline layer: the offline stages that build an atlas (see pipeline/README.md)."""

from pipeline.build import BuildReport, build_atlas, default_neutral, merge, run_build
from pipeline.config import (
    BuildConfig,
    IndexConfig,
    LabelConfig,
    RelevanceConfig,
    StatsConfig,
    VocabularyConfig,
    make_config,
)
from pipeline.grow import GrowReport, add_vocabulary

__all__ = [
    "BuildConfig",
    "BuildReport",
    "IndexConfig",
    "LabelConfig",
    "RelevanceConfig",
    "StatsConfig",
    "VocabularyConfig",
    "build_atlas",
    "default_neutral",
    "make_config",
    "merge",
    "run_build",
]
__all__ += ["GrowReport", "add_vocabulary"]
