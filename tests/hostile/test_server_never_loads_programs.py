"""With trusted formats on, the server accepts TorchScript and torch.export uploads and jobs,
yet never loads them: the whole upload + submit path runs in a process that never imports torch.

(``tests/service/test_server_imports.py`` covers start-up and shutdown only; this covers the
requests that carry programs.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from . import builders as b

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import hashlib, json, pathlib, sys, tempfile
import grpc
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc
from service.api.server import start_server
from service.core.settings import Settings

def upload(rpc, header_type, request_type, fmt, path):
    data = pathlib.Path(path).read_bytes()
    header = header_type(name=pathlib.Path(path).name, format=fmt, size_bytes=len(data),
                         sha256=hashlib.sha256(data).hexdigest())
    messages = [request_type(header=header), request_type(chunk=data)]
    return rpc(iter(messages), timeout=60).artifact_id

torchscript, torch_export, dataset = sys.argv[1:4]
state = pathlib.Path(tempfile.mkdtemp())
server = start_server(Settings.load({"TEMPERING_STATE_DIR": str(state),
                                     "TEMPERING_GRPC_ADDRESS": "127.0.0.1:0",
                                     "TEMPERING_ALLOW_TRUSTED_FORMATS": "true"}))
states = []
try:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.HardeningServiceStub(channel)
        data_id = upload(stub.UploadDataset, pb.DatasetUploadHeader, pb.UploadDatasetRequest,
                         pb.DATASET_FORMAT_NPZ, dataset)
        for fmt, path in ((pb.MODEL_FORMAT_TORCHSCRIPT, torchscript),
                          (pb.MODEL_FORMAT_TORCH_EXPORT, torch_export)):
            model_id = upload(stub.UploadModel, pb.ModelUploadHeader, pb.UploadModelRequest,
                              fmt, path)
            job = stub.SubmitJob(pb.SubmitJobRequest(spec=pb.JobSpec(
                model_id=model_id, train_dataset_id=data_id,
                training=pb.Training(epochs=1, fgsm=pb.Fgsm()),
                threat_model=pb.ThreatModel(epsilon=0.1))), timeout=60)
            states.append(pb.JobState.Name(job.state))
finally:
    server.stop(0)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "functorch")))
print(json.dumps({"states": states, "torch_modules": loaded[:5]}))
"""


def test_programs_are_accepted_and_queued_without_the_server_importing_torch(
    tmp_path: Path,
) -> None:
    torchscript = tmp_path / "model.pt"
    torchscript.write_bytes(b.torchscript_bytes())
    torch_export = tmp_path / "model.pt2"
    torch_export.write_bytes(b.torch_export_bytes())
    dataset = tmp_path / "train.npz"
    dataset.write_bytes(b.good_npz())

    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(torchscript), str(torch_export), str(dataset)],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["states"] == ["JOB_STATE_QUEUED", "JOB_STATE_QUEUED"], result.stderr[-3000:]
    assert outcome["torch_modules"] == []
