"""`query.py` / `styleatlas-query`: a thin click layer over query.Atlas."""
import click

from models.errors import AtlasError, run_cli


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Query a StyleAtlas: directions, edits, channel exploration, export."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def direction(as_json):
    """Not built yet (issue 5)."""
    raise AtlasError("querying is not built yet (issue 5).")


def main(args=None):
    run_cli(cli, args)
