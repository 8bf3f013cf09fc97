"""The file names of an atlas folder (index/FORMAT.md), in a leaf module every other index module can import."""

ATLAS_FILE = "atlas.h5"
MANIFEST = "MANIFEST.json"
VOCAB_INDEX = "vocab.faiss"
RELEVANCE_INDEX = "relevance.faiss"
CATALOG = "catalog.duckdb"
