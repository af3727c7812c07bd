"""Where an ONNX tensor's external data lies, checked before a byte of it is read: a relative
location inside the model's folder (after resolving symbolic links), an existing regular file,
an offset and a length inside it. Torch-free: the server's submit-time checker uses it before
onnxruntime reads a bundle's data files; the engine's reader before it reads them itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from onnx import TensorProto

from workers.engine.errors import InvalidModel


@dataclass(frozen=True)
class ExternalRange:
    """The bytes of one tensor: ``length`` bytes of ``file`` from ``offset``."""

    file: Path
    offset: int
    length: int


def external_range(tensor: TensorProto, base: Path) -> ExternalRange:
    """The checked byte range of ``tensor``'s external data under the resolved folder ``base``;
    :class:`InvalidModel` naming the tensor and its location otherwise."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    file = external_location(tensor.name, info.get("location", ""), base)
    try:
        offset = int(info.get("offset") or 0)
        available = file.stat().st_size - offset
        length = available if info.get("length") is None else int(info["length"])
    except ValueError as exc:
        raise InvalidModel(f"external data of tensor '{tensor.name}' is malformed") from exc
    if offset < 0 or length < 0 or length > available:
        raise InvalidModel(
            f"external data of tensor '{tensor.name}' lies outside its file "
            f"(offset {offset}, length {length})"
        )
    return ExternalRange(file, offset, length)


def external_location(tensor: str, location: str, base: Path) -> Path:
    """Resolve an external data location, refusing anything that leaves the model's folder."""
    if not location or "\x00" in location:
        raise InvalidModel(f"external data of tensor '{tensor}' has no valid location")
    posix = PurePosixPath(location.replace("\\", "/"))
    if (
        posix.is_absolute()
        or PureWindowsPath(location).is_absolute()
        or PureWindowsPath(location).drive
    ):
        raise InvalidModel(
            f"external data of tensor '{tensor}' has an absolute location ({location!r}); "
            "only files inside the model's folder are accepted"
        )
    if ".." in posix.parts:
        raise InvalidModel(
            f"external data of tensor '{tensor}' points outside the model's folder ({location!r})"
        )
    resolved = (base / posix).resolve()
    if not resolved.is_relative_to(base):
        raise InvalidModel(
            f"external data of tensor '{tensor}' resolves outside the model's folder "
            f"({location!r}, through a symbolic link)"
        )
    if not resolved.is_file():
        raise InvalidModel(
            f"external data file {location!r} of tensor '{tensor}' is missing (a bundle must"
            " carry every file the model references)"
        )
    return resolved
