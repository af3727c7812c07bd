"""What an uploaded model file is, judged from its bytes alone. Torch-free on purpose.

The gRPC server checks a job's model with these functions before it queues the job, and the
worker checks it again before loading it. Nothing here parses a pickle, imports torch or runs
any of the file's code: it reads magic numbers, the JSON header of a safetensors file and the
listing and CRC-32 checksums of zip archives (TorchScript and torch.export files are zips).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from workers.engine.errors import InvalidModel
from workers.engine.models.bundle import TAR_BLOCK, is_tar_header
from workers.engine.spec import ModelFormat

PICKLE_REFUSAL = (
    "the file is a Python pickle (torch.save output); pickles can run arbitrary code when"
    " loaded, so we never load them. Export the model to ONNX, or save the weights with"
    " safetensors and name a built-in architecture"
)

_SAFETENSORS_MAX_HEADER = 100_000_000
_DESCRIPTIONS = {
    "onnx": "an ONNX model",
    "onnx_bundle": "an ONNX bundle (an uncompressed tar of the .onnx and its data files)",
    "safetensors": "safetensors weights",
    "torchscript": "a TorchScript archive",
    "torch_export": "a torch.export archive",
    "unknown": "nothing we recognise as a model (truncated, corrupt or another kind of file)",
}


def sniff_format(path: Path) -> str:
    """What the bytes are, whatever the file is called: 'onnx', 'onnx_bundle' (a tar),
    'safetensors', 'torchscript', 'torch_export', 'pickle' or 'unknown'. Reads headers and zip
    listings only."""
    with path.open("rb") as handle:
        block = handle.read(TAR_BLOCK)
    head = block[:16]
    if not head:
        return "unknown"
    if is_tar_header(block):
        return "onnx_bundle"
    if head[:1] == b"\x80":
        return "pickle"
    if head[:4] == b"PK\x03\x04":
        return _sniff_zip(path)
    if len(head) >= 9 and _looks_like_safetensors(path, head):
        return "safetensors"
    if head[:1] in (b"\x08", b"\x12", b"\x1a", b"\x22", b"\x3a", b"\x42", b"\x52"):
        return "onnx"
    return "unknown"


def check_declared_format(declared: ModelFormat, path: Path) -> None:
    """Raise InvalidModel unless the file's bytes are what the upload declared: a pickle never
    passes, an archive must be intact (every member matches its CRC-32), safetensors weights
    must cover their data section exactly."""
    kind = sniff_format(path)
    if kind == "pickle":
        raise InvalidModel(PICKLE_REFUSAL)
    if kind != declared.value:
        raise InvalidModel(
            f"the upload was declared as {declared.value} but its bytes are"
            f" {_DESCRIPTIONS.get(kind, kind)}, not {_DESCRIPTIONS[declared.value]}; upload it"
            " again with the format it really has"
        )
    if kind in ("torchscript", "torch_export"):
        _check_archive(path, kind)
    elif kind == "safetensors":
        _check_safetensors_size(path)


def _sniff_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "unknown"
    parts = [name.split("/", 1)[-1] for name in names]
    if any(p.startswith("code/") for p in parts) and any(p == "constants.pkl" for p in parts):
        return "torchscript"
    if any(p in ("archive_format", ".data/version") or p.startswith("models/") for p in parts):
        return "torch_export"
    if any(p == "data.pkl" for p in parts):
        return "pickle"
    return "unknown"


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    (header_size,) = struct.unpack("<Q", head[:8])
    if header_size <= 0 or header_size > _SAFETENSORS_MAX_HEADER or head[8:9] != b"{":
        return False
    with path.open("rb") as handle:
        handle.seek(8)
        try:
            json.loads(handle.read(header_size))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return False
    return True


def _check_archive(path: Path, kind: str) -> None:
    """Read every member once and compare it with its CRC-32; nothing is interpreted."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidModel(
            f"the {_DESCRIPTIONS[kind]} is corrupt ({exc}); save the model again and re-upload"
        ) from exc
    if bad is not None:
        raise InvalidModel(
            f"the {_DESCRIPTIONS[kind]} is corrupt: member {bad!r} does not match its checksum;"
            " save the model again and re-upload"
        )


def _check_safetensors_size(path: Path) -> None:
    """The tensors' byte ranges must end exactly where the file does (a cut file does not)."""
    with path.open("rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
        handle.seek(0, 2)
        data_bytes = handle.tell() - 8 - header_size
    ends = [
        entry["data_offsets"][1]
        for name, entry in (header.items() if isinstance(header, dict) else ())
        if name != "__metadata__"
        and isinstance(entry, dict)
        and isinstance(entry.get("data_offsets"), list)
        and len(entry["data_offsets"]) == 2
        and isinstance(entry["data_offsets"][1], int)
    ]
    expected = max(ends, default=0)
    if expected != data_bytes:
        raise InvalidModel(
            f"the safetensors file is truncated or corrupt: its header describes {expected}"
            f" bytes of tensor data but the file holds {data_bytes}; save the weights again"
        )
