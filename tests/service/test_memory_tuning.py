"""The server tunes glibc's allocator for streamed uploads (service/ops/memory.py); the upload test
in test_e2e_redis.py measures what it is for."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.shared_support import ROOT


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc only",
)
def test_glibc_takes_both_allocator_settings() -> None:
    code = "from service.ops.memory import tune_allocator_for_streaming as t; print(t())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "proto")])},
        capture_output=True,
        text=True,
        check=True,
    )

    assert done.stdout.strip() == "True"
