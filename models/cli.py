"""What every StyleAtlas command shares (build, query, serve, convert): the --device, --json and --seed options,
one JSON emitter, warnings as one line each, errors and Ctrl-C without a traceback, and defaults read from the
library (so `--help` cannot drift from what the functions do).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import sys
import warnings

import click

from models.errors import AtlasError

DEFAULT_DEVICE = "auto"  # cuda when a GPU is visible, else cpu (models/device.py)
RESUME = "interrupted; completed work is kept, run the same command again to resume."


# ---------------------------------------------------------------------------------------------- defaults
def default_of(source, name: str):
    """The default of field `name` of a dataclass, or of parameter `name` of a function: the CLI's default."""
    if dataclasses.is_dataclass(source):
        field = {f.name: f for f in dataclasses.fields(source)}[name]
        return field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
    default = inspect.signature(source).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{source.__qualname__} has no default for {name}")
    return default


# ---------------------------------------------------------------------------------------------- options
def device_option(help_extra: str = ""):
    """--device, default auto, its name checked at parse time (whether this machine has it: when a model loads)."""
    from models.device import check_device

    return click.option(
        "--device",
        default=DEFAULT_DEVICE,
        show_default=True,
        callback=lambda ctx, param, value: check_device(value),
        help="auto (cuda if available, else cpu), cpu, cuda, cuda:1 ..., mps" + help_extra + ".",
    )


def json_option(help: str = "Print the result as JSON."):
    return click.option("--json", "as_json", is_flag=True, help=help)


def seed_option(default=(), help: str = "Seed of a sampled image (repeatable; default 0)."):
    """--seed N, repeatable: one image per seed, the image `sample_ws` gives for that seed (models/seeds.py)."""
    from models.device import check_seed

    return click.option(
        "--seed",
        multiple=True,
        type=int,
        default=default,
        show_default=bool(default),
        callback=lambda ctx, param, values: tuple(check_seed(v, "--seed") for v in values),
        help=help,
    )


# ---------------------------------------------------------------------------------------------- output
def emit(as_json: bool, obj, lines=()) -> None:
    """The one way a command prints its result: strict JSON (NaN -> null, numpy plain) or the lines for people."""
    if as_json:
        click.echo(json_text(obj))
        return
    for line in lines() if callable(lines) else lines:
        click.echo(line)


def json_text(obj, indent: int | None = 2) -> str:
    """Strict JSON (NaN and inf -> null, numpy plain, anything else as str): --json output and the web API's."""
    from models.jsonsafe import json_safe

    return json.dumps(json_safe(obj, default=str), indent=indent, allow_nan=False)


@contextlib.contextmanager
def warnings_as_lines():
    """Each UserWarning as one 'warning: ...' line on stderr when it happens; other warnings are not shown."""

    def show(message, category, filename, lineno, file=None, line=None):
        click.echo(f"warning: {(str(message).splitlines() or [''])[0]}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        yield


def print_warnings(ctx: click.Context) -> None:
    """Warnings as lines for the rest of this command (its subcommand included)."""
    ctx.with_resource(warnings_as_lines())


# ---------------------------------------------------------------------------------------------- Ctrl-C, errors
class ResumableInterrupt(KeyboardInterrupt):
    """Ctrl-C in a command that resumes (build, merge, add-vocabulary, mapper train): say how to go on."""


@contextlib.contextmanager
def resumable():
    """Inside: a Ctrl-C tells the person that running the same command again resumes."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if isinstance(exc, ResumableInterrupt):
            raise
        raise ResumableInterrupt() from exc


def _interrupted(exc: BaseException) -> str:
    return RESUME if isinstance(exc, ResumableInterrupt) else "interrupted."


def run_cli(command, args=None) -> None:
    """Run a click command so that an AtlasError is one line on stderr and exit status 2, no traceback."""
    try:
        command.main(args=args, standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C (KeyboardInterrupt) into Abort
        cause = exc.__cause__
        click.echo(_interrupted(cause) if isinstance(cause, KeyboardInterrupt) else "Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AtlasError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        click.echo(_interrupted(exc), err=True)
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
