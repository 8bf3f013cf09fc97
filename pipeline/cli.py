"""`build_index.py` / `styleatlas-build`: a thin click layer over pipeline.build_atlas."""
import click

from models.errors import AtlasError, run_cli


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def cli(as_json):
    """Build a StyleAtlas (style statistics, channel relevance, vocabulary, indexes, catalog)."""
    raise AtlasError("the build pipeline is not built yet (issue 4).")


def main(args=None):
    run_cli(cli, args)
