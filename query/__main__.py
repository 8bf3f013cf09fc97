"""`python -m query COMMAND ...`: the same as query.py / styleatlas-query."""

from query.cli import main

main()
