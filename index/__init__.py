"""StyleAtlas index layer: the on-disk atlas (HDF5 arrays, FAISS indexes, DuckDB catalog); see FORMAT.md."""

from index.atlas import FORMAT_VERSION, AtlasData, read_atlas, read_manifest, write_atlas
from index.catalog import catalog_path, open_catalog, write_catalog
from index.layout import ATLAS_FILE, CATALOG, MANIFEST, RELEVANCE_INDEX, VOCAB_INDEX
from index.search import build_ip_index, have_faiss, load_relevance_index, load_vocab_index, recall_at_k


def __getattr__(name):
    """check_fingerprints / fingerprint_* on first use: they need torch, reading an atlas does not."""
    if name in ("check_fingerprints", "fingerprint_embedder", "fingerprint_generator"):
        from index import fingerprint

        return getattr(fingerprint, name)
    raise AttributeError(f"module 'index' has no attribute {name!r}")


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
