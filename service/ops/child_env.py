"""The environment of a process that ``python -m service`` starts: the server's settings as
``TEMPERING_*`` variables, and this source tree importable even when it is not installed."""

from __future__ import annotations

import os
from pathlib import Path

import service
from service.core.settings import Settings


def child_environment(settings: Settings) -> dict[str, str]:
    root = str(Path(service.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **settings.to_env(), "PYTHONPATH": path}
