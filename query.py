#!/usr/bin/env python
"""Shim for `styleatlas-query`: the click CLI lives in query/cli.py (a package `query/` shadows this file on import)."""

from query.cli import main

if __name__ == "__main__":
    main()
