"""build_atlas: every offline stage (SPEC §2-§4) into one atlas folder, resumable, shardable, distributed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from index import ATLAS_FILE, fingerprint_embedder, fingerprint_generator
from index.atlas import read_atlas, read_manifest
from index.io import write_json_atomic
from index.work import BuildLock, drop_damaged_chunks, plan_path, read_plan
from models.errors import AtlasError
from pipeline import jacobian as jacobian_stage
from pipeline import relevance as relevance_stage
from pipeline import stats as stats_stage
from pipeline import vocabulary as vocab_stage
from pipeline.assemble import assemble, finish
from pipeline.common import chunk_ranges
from pipeline.config import BuildConfig, make_config
from pipeline.distributed import Workers, setup
from pipeline.estimate import relevance_plan

PLAN_FORMAT = 1


@dataclass
class BuildReport:
    """What a build did: the summary the CLI prints (and returns with --json)."""

    path: Path
    status: str  # "complete", "already complete", "shard done", "dry run"
    channels: int = 0
    layers: int = 0
    images_rendered: int = 0  # renders in this run (resumed chunks are not counted)
    renders_planned: int = 0  # 2 x M x C for the whole atlas
    texts_encoded: int = 0
    samples_mapped: int = 0
    vocabulary: int = 0
    seconds: dict = field(default_factory=dict)
    atlas_bytes: int = 0
    workers: int = 1  # 0: unknown (merge assembles what any number of shards computed)
    plan: dict = field(default_factory=dict)
    relevance_plan: dict = field(default_factory=dict)  # both methods' work; jacobian: memory / time estimate
    estimate: dict = field(default_factory=dict)  # --dry-run: what is done, seconds left (pipeline/estimate.py)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        d["plan"] = {k: v for k, v in self.plan.items() if k not in ("phrases", "templates")}
        return d


def default_neutral(generator) -> str:
    """The atlas's class word when none is given: generator.neutral (the demo generator's is "shape").

    Any other generator must be told (its resolution says nothing about what it draws).
    """
    neutral = getattr(generator, "neutral", None)
    if isinstance(neutral, str) and neutral.strip():
        return neutral.strip()
    raise AtlasError(
        "say what the generator draws with --neutral (neutral=), the class word of its images, e.g. "
        "--neutral face (FFHQ), --neutral car, --neutral church, --neutral cat."
    )


def model_sources(generator, embedder) -> dict:
    """Where the two models came from ({generator, clip, pretrained}; None where unknown), for the atlas."""
    from models.checkpoint import DEMO_GENERATOR

    gen = getattr(generator, "source", None)
    if isinstance(gen, str) and gen != "demo":
        path = Path(gen).expanduser()
        gen = "demo" if path.exists() and path.resolve() == DEMO_GENERATOR.resolve() else str(path.resolve())
    clip = getattr(embedder, "source", None)
    clip = clip if isinstance(clip, dict) else {}
    return dict(
        generator=gen if isinstance(gen, str) else None, clip=clip.get("clip"), pretrained=clip.get("pretrained")
    )


def make_plan(generator, embedder, cfg: BuildConfig) -> dict:
    """Everything that decides the atlas's contents (compared on resume; merge needs nothing else)."""
    from models.text import load_templates

    neutral = cfg.labels.neutral or default_neutral(generator)
    t = cfg.vocabulary.templates
    templates = list(t) if isinstance(t, tuple) else load_templates(t)
    from models.prompts import check_text

    check_text(neutral, "the neutral")
    for x in templates:
        if isinstance(x, str):
            check_text(x, "template")
    bad = [x for x in templates if not isinstance(x, str) or "{}" not in x]
    if bad or not templates:
        raise AtlasError(
            f"template {bad[0]!r} has no '{{}}' where the phrase goes; write e.g. 'a photo of a {{}}.'."
            if bad
            else "the template list is empty; pass templates such as 'a photo of a {}.'."
        )
    phrases = vocab_stage.resolve(cfg.vocabulary.vocabulary, cfg.vocabulary.english_size, neutral)
    layers = relevance_stage.layer_table(generator, cfg.relevance)
    channels = relevance_stage.atlas_channels(layers)
    config = cfg.to_dict()
    extra_chunks = (
        {"relevance_jacobian": jacobian_stage.num_chunks(cfg.relevance)} if cfg.relevance.method == "jacobian" else {}
    )
    config["vocabulary"]["vocabulary"] = vocab_stage.describe(cfg.vocabulary.vocabulary)
    config["labels"]["neutral"] = neutral
    config = json.loads(json.dumps(config))  # tuples -> lists, as they come back from JSON
    from index.fingerprint import architecture_embedder

    return dict(
        format=PLAN_FORMAT,
        config=config,
        neutral=neutral,
        templates=templates,
        phrases=phrases,
        phrases_sha256=hashlib.sha256(json.dumps(phrases).encode()).hexdigest(),
        layers=layers,
        num_channels=int(len(channels)),
        dim=int(embedder.dim),
        generator_fingerprint=fingerprint_generator(generator),
        embedder_fingerprint=fingerprint_embedder(embedder, templates),
        embedder_architecture=architecture_embedder(embedder),
        models=model_sources(generator, embedder),
        chunks=dict(
            stats=len(chunk_ranges(cfg.stats.num_samples, cfg.stats.chunk_size)),
            relevance=relevance_stage.num_chunks(len(channels), cfg.relevance),
            vocabulary=len(chunk_ranges(len(phrases), cfg.vocabulary.chunk_phrases)),
            **extra_chunks,
        ),
    )


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}" + (f" ({x!r} before, {y!r} now)" if len(repr(x)) + len(repr(y)) < 80 else ""))
    return out


def _check_same(out_dir: Path, old: dict, new: dict, what: str) -> None:
    """Refuse to continue a build made otherwise. Vocabulary and template sources (paths, selectors) are not
    compared, their contents are: the same file reached by another path (another node's mount) is the same."""

    def content(plan: dict) -> dict:
        plan = json.loads(json.dumps(plan))
        for key in ("vocabulary", "templates"):
            plan.get("config", {}).get("vocabulary", {}).pop(key, None)
        plan.pop("models", None)  # where the files were, not what they hold (the fingerprints say that)
        if "embedder_architecture" not in old:  # a partial build from before architectures were recorded
            plan.pop("embedder_architecture", None)
        _drop_new_defaults(plan.get("config", {}), old.get("config", {}))
        return plan

    diff = _differences(content(old), content(new))
    if diff:
        raise AtlasError(
            f"{out_dir} holds {what} made with other settings or models ({'; '.join(diff[:4])}); "
            "rerun with the same settings, or pass a new --out."
        )


def _drop_new_defaults(config: dict, old_config: dict) -> None:
    """Forget settings that a build made by older code did not record and that still hold their default (e.g.
    relevance.method = "exact"): such a build computed exactly what the defaults compute, so it may resume."""
    defaults = BuildConfig().to_dict()
    for stage, values in config.items():
        if isinstance(values, dict) and isinstance(old_config.get(stage), dict):
            for key in [k for k in values if k not in old_config[stage] and k in defaults.get(stage, {})]:
                if values[key] == defaults[stage][key]:
                    values.pop(key)


def _complete_matches(out_dir: Path, plan: dict) -> bool:
    """Whether out_dir holds this plan's finished atlas; outputs that derive from a sound atlas.h5 (indexes,
    catalog, manifest) are rewritten when missing or damaged. AtlasError names a file that cannot be repaired."""
    from index.layout import MANIFEST
    from index.verify import verify_files
    from pipeline.assemble import plan_configs, repair

    if not (out_dir / ATLAS_FILE).exists():
        return False
    try:
        manifest = read_manifest(out_dir)
    except AtlasError:
        manifest = None  # unreadable: rewritten below from atlas.h5
    if manifest and manifest.get("complete"):
        try:
            data = read_atlas(out_dir)
        except AtlasError:
            data = None
        if data is not None:
            _check_same(out_dir, _identity(data), {k: plan[k] for k in _identity(data)}, "a finished atlas")
            return True
    elif read_plan(out_dir) is not None:
        return False  # a build that did not finish: it resumes from its work folder
    try:
        if manifest and ATLAS_FILE in (manifest.get("files") or {}):
            verify_files(
                out_dir,
                dict(
                    files={ATLAS_FILE: manifest["files"][ATLAS_FILE]},
                    sha256={k: v for k, v in (manifest.get("sha256") or {}).items() if k == ATLAS_FILE},
                ),
            )
        data = read_atlas(out_dir, require_complete=False)
    except AtlasError as exc:
        if read_plan(out_dir) is not None:
            return False  # assembly rewrites atlas.h5 from the work folder
        raise AtlasError(
            f"{str(exc).rstrip('.')}. It cannot be repaired without its work folder: delete "
            f"{out_dir / ATLAS_FILE} and {out_dir / MANIFEST}, then run the build again (everything is "
            "recomputed)."
        ) from None
    _check_same(out_dir, _identity(data), {k: plan[k] for k in _identity(data)}, "a finished atlas")
    data.models = data.models or plan.get("models", {})
    repair(out_dir, data, plan_configs(plan)[2])
    return True


def _identity(data) -> dict:
    return dict(
        config=data.config,
        generator_fingerprint=data.generator_fingerprint,
        embedder_fingerprint=data.embedder_fingerprint,
        phrases=data.vocab,
    )


def _only_ours(work: Path) -> bool:
    """A work/ folder holding nothing but files a build writes (another shard job that has just started)."""
    from index.work import STAGES, is_ours

    if not work.is_dir() or not any(work.iterdir()):
        return False
    for p in work.iterdir():
        if p.is_dir() and p.name in STAGES:
            if not all(q.is_file() and is_ours(q.name, p.name) for q in p.iterdir()):
                return False
        elif not (p.is_file() and is_ours(p.name)):
            return False
    return True


def refuse_foreign(out_dir: Path) -> None:
    """A build writes only into a new or empty folder, or one of ours (MANIFEST.json, atlas.h5, work/plan.json)."""
    from index.layout import MANIFEST
    from index.work import LOCK, work_dir

    if out_dir.exists() and not out_dir.is_dir():
        raise AtlasError(f"--out {out_dir} is a file; pass a folder for the atlas.")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if (
        any((out_dir / f).exists() for f in (MANIFEST, ATLAS_FILE))
        or plan_path(out_dir).exists()
        or (work_dir(out_dir) / LOCK).exists()
        or _only_ours(work_dir(out_dir))
    ):
        return
    shown = ", ".join(sorted(p.name for p in out_dir.iterdir())[:4])
    raise AtlasError(
        f"--out {out_dir} is a folder with other files in it ({shown}, ...) and no atlas or build "
        "plan; pass a new or empty folder (a build never writes into, or deletes from, other folders)."
    )


def _remember_source(model, source: dict) -> None:
    try:
        if "generator" in source:
            model.source = source["generator"]
        else:
            model.source = source
    except AttributeError:  # a model object that refuses new attributes: its source stays unknown
        pass


def _prepare_models(generator, embedder, device):
    if device is None:
        return
    for model in (generator, embedder):
        if callable(getattr(model, "to", None)):
            model.to(device)
    if callable(getattr(generator, "eval", None)):
        generator.eval()


def run_build(generator, embedder, out_dir, **config) -> BuildReport:
    """build_atlas with the report: the summary of what ran (see build_atlas)."""
    cfg, run = make_config(**config)
    out_dir = Path(out_dir).expanduser()
    if run.get("models"):  # the CLI knows the sources better than the objects do (e.g. "demo")
        for model, keys in ((generator, ("generator",)), (embedder, ("clip", "pretrained"))):
            _remember_source(model, {k: run["models"].get(k) for k in keys})
    workers, device = setup(run.get("shard"), run.get("device"))
    try:
        return _build(generator, embedder, out_dir, cfg, run, workers, device)
    finally:
        workers.close()


def _build(generator, embedder, out_dir: Path, cfg: BuildConfig, run: dict, workers: Workers, device) -> BuildReport:
    t_start = time.perf_counter()
    show = bool(run.get("progress", True)) and (workers.rank == 0 or workers.shard)
    _prepare_models(generator, embedder, device)
    plan = make_plan(generator, embedder, cfg)
    report = BuildReport(
        path=out_dir,
        status="dry run",
        channels=plan["num_channels"],
        layers=sum(l["in_atlas"] for l in plan["layers"]),
        renders_planned=2 * cfg.relevance.num_images * plan["num_channels"],
        vocabulary=len(plan["phrases"]),
        workers=workers.world,
        plan=plan,
    )
    report.relevance_plan = relevance_plan(
        generator, embedder, cfg.relevance, plan["num_channels"], probe=bool(run.get("dry_run"))
    )
    report.seconds["plan"] = time.perf_counter() - t_start
    if run.get("dry_run"):  # the plan, what the folder already has, and a timed estimate of the rest
        from pipeline.estimate import estimate

        state = _dry_run_state(out_dir, plan)
        report.estimate = estimate(generator, embedder, plan, cfg, out_dir, state, report.relevance_plan)
        return report
    refuse_foreign(out_dir)
    workers.barrier()  # every rank has looked before any rank writes
    with BuildLock(out_dir) if workers.world == 1 and not workers.shard else contextlib.nullcontext():
        return _build_locked(generator, embedder, out_dir, cfg, run, workers, plan, report, show, t_start)


def _dry_run_state(out_dir: Path, plan: dict) -> str:
    """What out_dir holds for `plan`: "new", "partial", "complete" or "other" (pipeline/estimate.STATES)."""
    try:
        if _complete_matches(out_dir, plan):
            return "complete"
        existing = read_plan(out_dir)
        if existing is None:
            return "new"
        _check_same(out_dir, existing, plan, "a partial build")
        return "partial"
    except AtlasError:
        return "other"


def _build_locked(generator, embedder, out_dir, cfg, run, workers, plan, report, show, t_start) -> BuildReport:
    if _complete_matches(out_dir, plan):
        if workers.rank == 0 and not workers.shard:
            finish(out_dir, bool(run.get("keep_work", False)))  # a build killed while cleaning up
        report.status = "already complete"
        report.atlas_bytes = atlas_bytes(out_dir)
        return report
    # the plan: written by the first worker, checked by every later one (and by every resumed run)
    if (workers.rank == 0 or workers.shard) and read_plan(out_dir) is None:
        write_json_atomic(plan_path(out_dir), plan, exclusive=True)
    workers.barrier()
    _check_same(out_dir, read_plan(out_dir), plan, "a partial build")
    if workers.rank == 0 or workers.shard:
        for path in drop_damaged_chunks(out_dir, plan):
            warnings.warn(f"{path} was damaged (unreadable); it is computed again.")
    workers.barrier()

    t0 = time.perf_counter()
    stats_chunks = workers.mine(plan["chunks"]["stats"]) if workers.torchrun else list(range(plan["chunks"]["stats"]))
    report.samples_mapped = stats_stage.run(generator, cfg.stats, out_dir, stats_chunks, show)
    workers.barrier()
    if workers.rank == 0 or workers.shard:
        stats = stats_stage.merge(out_dir, cfg.stats)
    workers.barrier()
    if workers.torchrun and workers.rank != 0:
        stats = stats_stage.merge(out_dir, cfg.stats)  # reads the merged file rank 0 wrote
    report.seconds["stats"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    channels = relevance_stage.atlas_channels(plan["layers"])
    stage, key = (
        (jacobian_stage, "relevance_jacobian") if cfg.relevance.method == "jacobian" else (relevance_stage, "relevance")
    )
    report.images_rendered = stage.run(
        generator,
        embedder,
        cfg.relevance,
        out_dir,
        channels,
        stats,
        plan["layers"],
        workers.mine(plan["chunks"][key]),
        show,
    )
    report.seconds["relevance"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report.texts_encoded = vocab_stage.run(
        embedder,
        plan["phrases"],
        plan["templates"],
        plan["neutral"],
        cfg.vocabulary,
        out_dir,
        workers.mine(plan["chunks"]["vocabulary"]),
        show,
    )
    report.seconds["vocabulary"] = time.perf_counter() - t0
    workers.barrier()
    if workers.torchrun:  # the report speaks for the whole run, not for rank 0's share
        report.samples_mapped, report.images_rendered, report.texts_encoded = workers.sum(
            [report.samples_mapped, report.images_rendered, report.texts_encoded]
        )
    if workers.shard:
        report.status = "shard done"
        report.seconds["total"] = time.perf_counter() - t_start
        return report
    if workers.rank == 0:
        report.seconds.update(
            assemble(out_dir, keep_work=bool(run.get("keep_work", False)), show=show, device=run.get("device"))
        )  # cuda: FAISS indexes on the GPUs
        report.atlas_bytes = atlas_bytes(out_dir)
    workers.barrier()
    report.status = "complete"
    report.seconds["total"] = time.perf_counter() - t_start
    return report


def atlas_bytes(out_dir) -> int:
    """Bytes of the atlas files (the work folder excluded)."""
    out_dir = Path(out_dir)
    return sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def merge(out_dir, keep_work: bool = False, progress: bool = True) -> BuildReport:
    """Assemble the atlas from the work folder of a sharded build (no models needed)."""
    out_dir = Path(out_dir).expanduser()
    t0 = time.perf_counter()
    plan = read_plan(out_dir)
    if plan is None:
        raise AtlasError(
            f"{out_dir} has no work/plan.json, so there is nothing to merge; start the build with "
            f"`styleatlas-build --out {out_dir}` (or its --shard jobs) first."
        )
    with BuildLock(out_dir):
        seconds = assemble(out_dir, keep_work=keep_work, show=progress)
    seconds["total"] = time.perf_counter() - t0
    return BuildReport(
        path=out_dir,
        status="complete",
        channels=plan["num_channels"],
        workers=0,
        layers=sum(l["in_atlas"] for l in plan["layers"]),
        vocabulary=len(plan["phrases"]),
        renders_planned=2 * plan["config"]["relevance"]["num_images"] * plan["num_channels"],
        seconds=seconds,
        atlas_bytes=atlas_bytes(out_dir),
        plan=plan,
    )


def build_atlas(generator, embedder, out_dir, **config) -> Path:
    """Run every offline stage into `out_dir`, resumably (CONTRACT.md); return the atlas folder.

    Keys: num_images, alpha, psi, seed, batch_size, device, vocabulary, templates, num_samples, layers,
    include_torgb, neutral, k, chunk_channels, shard, keep_work, progress, ... (pipeline/config.py).
    """
    return run_build(generator, embedder, out_dir, **config).path
