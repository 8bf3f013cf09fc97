"""StyleAtlas errors: one sentence for a person, what is wrong and what to do."""


class AtlasError(Exception):
    """Base class of every error StyleAtlas raises on purpose; the CLIs print it without a traceback."""


class CheckpointError(AtlasError):
    """A model file is missing, corrupt, of another kind, or has inconsistent shapes."""


class PromptError(AtlasError):
    """A prompt is empty, not text, or otherwise unusable."""


class NoDirectionError(PromptError):
    """The target and the neutral have the same embedding, so Δt = normalise(t(target) - t(neutral)) is undefined."""


class AtlasFormatError(AtlasError):
    """An atlas directory is missing, incomplete, or does not match the models it is opened with."""


def run_cli(command, args=None) -> None:
    """Run a click command so that an AtlasError is one line on stderr and exit status 2, no traceback."""
    import sys

    import click

    try:
        command.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AtlasError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted; completed work is kept, run the same command again to resume.", err=True)
        sys.exit(130)
    except OSError as exc:  # a full disk, an unwritable folder, a file that vanished: the system's own words
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        click.echo(
            f"error: {exc.strerror or exc}{where}; free space, fix the permissions or pick another path, "
            "then run the same command again.",
            err=True,
        )
        sys.exit(2)
    except MemoryError:
        click.echo("error: not enough memory for this request; ask for fewer images, channels or rows.", err=True)
        sys.exit(2)
    except Exception as exc:  # errors of the storage libraries (duckdb, faiss, h5py) are about files, not bugs
        if not _storage_error(exc):
            raise
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        click.echo(f"error: {line}; if an atlas file is damaged, run the build command again to rewrite it.", err=True)
        sys.exit(2)


def _storage_error(exc) -> bool:
    module = type(exc).__module__ or ""
    return module.split(".")[0] in ("duckdb", "_duckdb", "h5py") or (
        isinstance(exc, RuntimeError) and "faiss" in str(exc).lower()
    )
