"""StyleAtlas errors: one sentence for a person, what is wrong and what to do."""


class AtlasError(Exception):
    """Base class of every error StyleAtlas raises on purpose; the CLIs print it without a traceback."""


class CheckpointError(AtlasError):
    """A model file is missing, corrupt, of another kind, or has inconsistent shapes."""


class PromptError(AtlasError):
    """A prompt is empty, not text, or otherwise unusable."""


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
