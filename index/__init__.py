"""StyleAtlas index layer: the on-disk atlas (HDF5 arrays, FAISS indexes, DuckDB catalog); see FORMAT.md."""

from index.atlas import (
    ATLAS_FILE,
    CATALOG,
    FORMAT_VERSION,
    MANIFEST,
    RELEVANCE_INDEX,
    VOCAB_INDEX,
    AtlasData,
    check_atlas_fingerprints,
    read_atlas,
    read_manifest,
    write_atlas,
)
from index.catalog import catalog_path, open_catalog, write_catalog
from index.search import build_ip_index, have_faiss, load_relevance_index, load_vocab_index, recall_at_k


def __getattr__(name):
    """fingerprint_generator / fingerprint_embedder on first use: they need torch, reading an atlas does not."""
    if name in ("fingerprint_embedder", "fingerprint_generator"):
        from index import fingerprint

        return getattr(fingerprint, name)
    raise AttributeError(f"module 'index' has no attribute {name!r}")


def check_fingerprints(data: AtlasData, generator=None, embedder=None) -> None:
    """Refuse models other than those `data` was built with; AtlasFormatError names both fingerprints."""
    check_atlas_fingerprints(data, generator, embedder)


__all__ = [
    "ATLAS_FILE",
    "CATALOG",
    "FORMAT_VERSION",
    "MANIFEST",
    "RELEVANCE_INDEX",
    "VOCAB_INDEX",
    "AtlasData",
    "build_ip_index",
    "catalog_path",
    "check_fingerprints",
    "fingerprint_embedder",
    "fingerprint_generator",
    "have_faiss",
    "load_relevance_index",
    "load_vocab_index",
    "open_catalog",
    "read_atlas",
    "read_manifest",
    "recall_at_k",
    "write_atlas",
    "write_catalog",
]
