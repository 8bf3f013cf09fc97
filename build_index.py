#!/usr/bin/env python
"""Shim for `styleatlas-build`: the click CLI lives in pipeline/cli.py."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
