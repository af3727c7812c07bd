"""The server process never imports torch (it must not load TorchScript or torch.export)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, tempfile, pathlib
from service.ops.cli import main  # noqa: F401
from service.api.server import start_server
from service.core.settings import Settings
tmp = pathlib.Path(tempfile.mkdtemp())
server = start_server(Settings.load({"TEMPERING_STATE_DIR": str(tmp),
                                     "TEMPERING_GRPC_ADDRESS": "127.0.0.1:0"}))
server.stop(0)
print("torch" in sys.modules)
"""


def test_server_runs_without_importing_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"
