"""`python -m pipeline [OPTIONS] [COMMAND]`: the same as build_index.py / styleatlas-build."""

from pipeline.cli import main

main()
