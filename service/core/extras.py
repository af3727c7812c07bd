"""One line instead of a traceback when a process starts without its optional dependencies."""

from __future__ import annotations

import sys

PROJECT_PACKAGES = frozenset({"client", "service", "workers", "tempering"})


def exit_if_extra_missing(error: ModuleNotFoundError, process: str, extra: str) -> None:
    """Exit 2 saying what to install when ``error`` names a module of another distribution; a
    module of the project itself missing is a bug, and the caller raises it on."""
    if (error.name or "").partition(".")[0] in PROJECT_PACKAGES:
        return
    print(
        f"tempering: {process} needs the {extra} dependencies: install tempering[{extra}]"
        f" (pip install 'tempering[{extra}]') ({error})",
        file=sys.stderr,
    )
    raise SystemExit(2)
