"""The version ``temper --version`` reports, from the installed package's metadata."""

from __future__ import annotations

from importlib import metadata

PACKAGE = "tempering"


def client_version() -> str:
    """The installed package's version; ``unknown`` when run from a tree never installed."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"
