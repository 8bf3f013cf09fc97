"""`python -m serve --atlas DIR`: the same as styleatlas-serve."""

from serve.cli import main

main()
