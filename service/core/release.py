"""Which release of Tempering this process runs, as the package metadata says."""

from __future__ import annotations

from importlib import metadata

PACKAGE = "tempering"


def package_version() -> str:
    """The installed package's version; ``unknown`` when run from a tree never installed."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"
