"""Mappers inside an atlas: train one for a prompt with the atlas's models, store it, find it (index/mappers.py)."""

from __future__ import annotations

from pathlib import Path

from index.mappers import add_mapper_record, find_mapper, list_mappers, mapper_path
from index.verify import sha256_file
from models.errors import AtlasError, AtlasFormatError
from query.mapper import Mapper, load_mapper


def _atlas_dir(atlas) -> Path:
    path = getattr(atlas.data, "path", None)
    if path is None or not (Path(path) / "atlas.h5").exists():
        raise AtlasError("this atlas has no folder on disk to keep mappers in; open it with query.Atlas.open(dir).")
    return Path(path)


def check_mapper_generator(atlas, fingerprint, what: str) -> None:
    """Refuse a mapper trained for another generator than the atlas's (AtlasFormatError naming both)."""
    mine = atlas.data.generator_fingerprint
    if fingerprint != mine:
        raise AtlasFormatError(
            f"{what} was trained for generator {str(fingerprint)[:16]}..., but this atlas was "
            f"built with {str(mine)[:16]}...; train a mapper for this generator "
            "(query.py mapper train PROMPT)."
        )


def store_mapper(atlas, mapper: Mapper) -> dict:
    """Save `mapper` as the atlas's mapper for its prompt (replacing an older one) and record it in the catalog."""
    check_mapper_generator(atlas, mapper.info.get("generator_fingerprint"), f"the mapper for {mapper.prompt!r}")
    out_dir = _atlas_dir(atlas)
    mapper.save(mapper_path(out_dir, mapper.prompt))
    return add_mapper_record(
        out_dir, mapper.prompt, dict(mapper.info, levels=list(mapper.config.levels), norm=mapper.config.norm)
    )


def atlas_mapper(atlas, prompt: str, device=None) -> Mapper | None:
    """The atlas's stored mapper for `prompt`, checked (file hash, generator), or None when there is none."""
    path = getattr(atlas.data, "path", None)
    record = find_mapper(path, prompt) if path is not None and Path(path).is_dir() else None
    if record is None:
        return None
    file = Path(path) / record["file"]
    if sha256_file(file) != record.get("sha256"):
        raise AtlasFormatError(
            f"mapper file {file} does not match its record (sha256 differs); train the mapper for this prompt again."
        )
    check_mapper_generator(atlas, record.get("generator_fingerprint"), f"the stored mapper for {prompt!r}")
    return load_mapper(file, device=device or "cpu")


def train_atlas_mapper(atlas, prompt: str, *, identity=None, progress: bool = True, **options) -> dict:
    """train_mapper with the atlas's generator and CLIP, resumable (progress kept in mappers/), then stored."""
    from query.mapper_train import train_mapper

    out_dir = _atlas_dir(atlas)
    generator, embedder = atlas.generator, atlas.embedder
    if embedder is None:
        raise AtlasError("training a mapper needs the atlas's CLIP; pass embedder= (CLI: --clip).")
    final = mapper_path(out_dir, prompt)
    progress_file = final.with_name(final.stem + ".training.pt")
    mapper = train_mapper(
        generator, embedder, prompt, identity=identity, checkpoint=progress_file, progress=progress, **options
    )
    record = store_mapper(atlas, mapper)
    progress_file.unlink(missing_ok=True)
    return record


__all__ = ["atlas_mapper", "check_mapper_generator", "list_mappers", "store_mapper", "train_atlas_mapper"]
