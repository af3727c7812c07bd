"""The hostile-input corpus: every case is a bad or malicious request and the status it must get.

A case builds an :class:`Upload` (one upload stream that the server must refuse: a model, a
dataset, a tokenizer or a feature schema) or a :class:`Submit` (uploads that the server
accepts, then a SubmitJob that it must refuse), for an image-like, a text or a tabular model.
Bytes come from generator functions in :mod:`builders`, or from the tiny committed files in
``static/``. ``test_hostile_corpus.py`` walks the whole list against a real gRPC server (the
checks are in :mod:`runner`), and ``bench/hostile_rss.py`` walks it while it watches the
server's memory.

Conventions: ``fragment`` is a piece of the status message that makes it actionable (names the
field, the limit or the fix); ``trusted`` picks the server with TorchScript / torch.export
uploads switched on; ``markers`` names the files a payload's code would create if anything ever
ran it (they must never appear). A few cases expect OK: they pin down inputs that look odd but
are harmless by contract (an upload name is never a path; an unset field means "the default").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import grpc
import numpy as np
from tempering.v1 import hardening_pb2 as pb

from . import builders as b
from .servers import CHUNK, UPLOAD_LIMIT

OVERSIZED_STREAM_CHUNKS = 64
"""An oversized stream offers this many 1 MiB chunks; the server must stop long before."""

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
OK = grpc.StatusCode.OK

ONNX = pb.MODEL_FORMAT_ONNX
SAFETENSORS = pb.MODEL_FORMAT_SAFETENSORS
TORCHSCRIPT = pb.MODEL_FORMAT_TORCHSCRIPT
TORCH_EXPORT = pb.MODEL_FORMAT_TORCH_EXPORT
BUNDLE = pb.MODEL_FORMAT_ONNX_BUNDLE
NPZ = pb.DATASET_FORMAT_NPZ
JSONL = pb.DATASET_FORMAT_JSONL
CSV = pb.DATASET_FORMAT_CSV

UploadKind = Literal["model", "dataset", "tokenizer", "schema"]
Modality = Literal["image", "text", "tabular"]


@dataclass(frozen=True)
class Context:
    """Where a case may point: the trap markers' folder and a bait file, both outside the
    server's state directory."""

    marker_dir: Path
    bait: Path

    def marker(self, name: str) -> Path:
        return self.marker_dir / name


@dataclass(frozen=True)
class Upload:
    """One upload stream of ``kind``: a header (declared size and hash default to the data's),
    then ``data`` in 1 MiB chunks, or ``chunks()``, or the raw ``messages()`` instead of both.
    ``fmt`` is a model's or a dataset's format (tokenizers and schemas have one each)."""

    data: bytes
    kind: UploadKind = "model"
    fmt: int = ONNX
    declared_size: int | None = None
    declared_sha256: str | None = None
    name: str = "upload.bin"
    chunks: Callable[[], Iterable[bytes]] | None = None
    messages: Callable[[], Iterator[object]] | None = None
    max_chunks_read: int | None = None
    """At most this many chunks may the server pull from the stream before it answers."""


@dataclass(frozen=True)
class Submit:
    """Upload ``model``, the data and the tokenizer or schema (all must be accepted; one left
    out is the modality's good one), then submit the modality's valid job on them (FGSM on the
    image-like model, PGD on the text model, FGSM under the schema), changed by ``edit``."""

    model: bytes | None = None
    model_fmt: int = ONNX
    train: bytes | None = None
    eval: bytes | None = None
    modality: Modality = "image"
    train_fmt: int = NPZ
    tokenizer: bytes | None = None
    schema: bytes | None = None
    edit: Callable[[pb.SubmitJobRequest], None] | None = None
    check: Callable[[pb.Job], None] | None = None
    """For cases expected to succeed: what the returned job must look like."""


Build = Callable[[Context], Upload | Submit]


@dataclass(frozen=True)
class Case:
    name: str
    rpc: str
    build: Build
    code: grpc.StatusCode
    fragment: str
    trusted: bool = False
    markers: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return self.name


# --- helpers ----------------------------------------------------------------------------------


def good_model() -> bytes:
    return b.linear_onnx(seed=0)


def good_data() -> bytes:
    return b.good_npz()


def model_case(
    name: str,
    model: Callable[[Context], bytes],
    code: grpc.StatusCode,
    fragment: str,
    *,
    fmt: int = ONNX,
    trusted: bool = False,
    markers: tuple[str, ...] = (),
    edit: Callable[[pb.SubmitJobRequest], None] | None = None,
) -> Case:
    """The model uploads fine (uploads are not parsed); SubmitJob must refuse it."""
    return Case(
        name,
        "SubmitJob",
        lambda ctx: Submit(model=model(ctx), model_fmt=fmt, edit=edit),
        code,
        fragment,
        trusted,
        markers,
    )


def data_case(
    name: str,
    data: Callable[[Context], bytes],
    fragment: str,
    *,
    as_eval: bool = False,
    markers: tuple[str, ...] = (),
    edit: Callable[[pb.SubmitJobRequest], None] | None = None,
) -> Case:
    def build(ctx: Context) -> Submit:
        if as_eval:
            return Submit(eval=data(ctx), edit=edit)
        return Submit(train=data(ctx), edit=edit)

    return Case(name, "SubmitJob", build, INVALID, fragment, markers=markers)


def arrays_case(
    name: str, arrays: Callable[[], tuple[np.ndarray, np.ndarray]], fragment: str
) -> Case:
    return data_case(name, lambda ctx: b.npz_bytes(*arrays()), fragment)


def param_case(
    name: str,
    edit: Callable[[pb.SubmitJobRequest], None],
    fragment: str,
    code: grpc.StatusCode = INVALID,
    check: Callable[[pb.Job], None] | None = None,
) -> Case:
    return Case(name, "SubmitJob", lambda ctx: Submit(edit=edit, check=check), code, fragment)


def upload_case(
    name: str,
    upload: Callable[[Context], Upload],
    code: grpc.StatusCode,
    fragment: str,
    *,
    rpc: str = "UploadModel",
) -> Case:
    return Case(name, rpc, upload, code, fragment)


def pickle_case(
    name: str,
    payload: Callable[[Path], bytes],
    fmt: int,
    *,
    trusted: bool = False,
    edit: Callable[[pb.SubmitJobRequest], None] | None = None,
) -> Case:
    """A payload whose unpickling creates the case's marker; refused as a pickle."""
    return model_case(
        name,
        lambda ctx: payload(ctx.marker(name)),
        INVALID,
        "pickle",
        fmt=fmt,
        trusted=trusted,
        markers=(name,),
        edit=edit,
    )


def with_arrays(
    change: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    return lambda: change(*b.good_arrays())


def _set(**fields: object) -> Callable[[pb.SubmitJobRequest], None]:
    """Set dotted fields of the request: ``_set(**{"spec.seed": 5})``."""

    def edit(request: pb.SubmitJobRequest) -> None:
        for dotted, value in fields.items():
            *path, last = dotted.split(".")
            target: object = request
            for part in path:
                target = getattr(target, part)
            if isinstance(value, list):
                container = getattr(target, last)
                del container[:]
                container.extend(value)
            else:
                setattr(target, last, value)

    return edit


def _distillation(**fields: object) -> Callable[[pb.SubmitJobRequest], None]:
    def edit(request: pb.SubmitJobRequest) -> None:
        request.spec.training.distillation.CopyFrom(pb.Distillation(**fields))  # type: ignore[arg-type]

    return edit


def _pgd(**fields: object) -> Callable[[pb.SubmitJobRequest], None]:
    def edit(request: pb.SubmitJobRequest) -> None:
        request.spec.training.pgd.CopyFrom(pb.Pgd(**fields))  # type: ignore[arg-type]

    return edit


def _trades(**fields: object) -> Callable[[pb.SubmitJobRequest], None]:
    def edit(request: pb.SubmitJobRequest) -> None:
        request.spec.training.trades.CopyFrom(pb.Trades(**fields))  # type: ignore[arg-type]

    return edit


def _unknown_method(request: pb.SubmitJobRequest) -> None:
    """A method this server does not know: field 14 of Training (a newer client's oneof
    member), which the server parses as an unknown field, so no method is set."""
    request.spec.training.CopyFrom(pb.Training.FromString(b"\x08\x01" + b"\x72\x02\x08\x01"))


def _no_method(request: pb.SubmitJobRequest) -> None:
    request.spec.training.ClearField("fgsm")


def _no_spec(request: pb.SubmitJobRequest) -> None:
    request.ClearField("spec")


def _safetensors_job(request: pb.SubmitJobRequest) -> None:
    request.spec.architecture = "mlp"


def _epochs_left_to_the_recipe(job: pb.Job) -> None:
    assert job.state == pb.JOB_STATE_QUEUED
    assert not job.spec.training.HasField("epochs")


def _warmup_is_zero(job: pb.Job) -> None:
    assert job.state == pb.JOB_STATE_QUEUED
    assert job.spec.training.fgsm.HasField("eps_warmup_epochs")
    assert job.spec.training.fgsm.eps_warmup_epochs == 0.0


def _temperature_is(expected: float) -> Callable[[pb.Job], None]:
    def check(job: pb.Job) -> None:
        assert job.spec.training.distillation.temperature == expected

    return check


def _zero_chunks(count: int) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        for _ in range(count):
            yield b"\0" * CHUNK

    return chunks


def _header_message(data: bytes, fmt: int = ONNX) -> pb.UploadModelRequest:
    return pb.UploadModelRequest(
        header=pb.ModelUploadHeader(
            name="m.onnx",
            format=fmt,  # type: ignore[arg-type]
            size_bytes=len(data),
            sha256=b.sha256(data),
        )
    )


def _chunk_first() -> Iterator[object]:
    data = good_model()
    yield pb.UploadModelRequest(chunk=data)
    yield _header_message(data)


def _two_headers() -> Iterator[object]:
    data = b.linear_onnx(seed=11)
    yield _header_message(data)
    yield _header_message(data)
    yield pb.UploadModelRequest(chunk=data)


def _nothing() -> Iterator[object]:
    yield from ()


def tokenizer_upload_case(
    name: str, data: Callable[[], bytes], fragment: str, code: grpc.StatusCode = INVALID
) -> Case:
    """A tokenizer refused at UploadTokenizer (read in a checker process before it is kept)."""
    return Case(
        name, "UploadTokenizer", lambda ctx: Upload(data(), kind="tokenizer"), code, fragment
    )


def schema_upload_case(
    name: str, data: Callable[[], bytes], fragment: str, code: grpc.StatusCode = INVALID
) -> Case:
    """A feature schema refused at UploadSchema (read in a checker process before it is kept)."""
    return Case(name, "UploadSchema", lambda ctx: Upload(data(), kind="schema"), code, fragment)


def text_case(
    name: str,
    fragment: str,
    *,
    train: Callable[[], bytes] | None = None,
    train_fmt: int = JSONL,
    tokenizer: Callable[[], bytes] | None = None,
    edit: Callable[[pb.SubmitJobRequest], None] | None = None,
    code: grpc.StatusCode = INVALID,
) -> Case:
    """A text job whose texts, tokenizer or parameters SubmitJob must refuse."""

    def build(ctx: Context) -> Submit:
        return Submit(
            modality="text",
            train=None if train is None else train(),
            train_fmt=train_fmt,
            tokenizer=None if tokenizer is None else tokenizer(),
            edit=edit,
        )

    return Case(name, "SubmitJob", build, code, fragment)


def text_line_case(name: str, line: bytes, fragment: str, *, at: int = 3) -> Case:
    """Good JSON Lines with ``line`` as line ``at``."""
    return text_case(name, fragment, train=lambda: b.jsonl_with(line, at))


def tabular_case(
    name: str,
    fragment: str,
    *,
    data: Callable[[Context], bytes] | None = None,
    schema: Callable[[], bytes] | None = None,
    edit: Callable[[pb.SubmitJobRequest], None] | None = None,
    code: grpc.StatusCode = INVALID,
    markers: tuple[str, ...] = (),
) -> Case:
    """A tabular job (a linear model of the schema's columns) SubmitJob must refuse."""

    def build(ctx: Context) -> Submit:
        return Submit(
            modality="tabular",
            train=None if data is None else data(ctx),
            schema=None if schema is None else schema(),
            edit=edit,
        )

    return Case(name, "SubmitJob", build, code, fragment, markers=markers)


def tabular_arrays_case(
    name: str,
    change: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    fragment: str,
) -> Case:
    return tabular_case(name, fragment, data=lambda ctx: b.npz_bytes(*change(*b.tabular_arrays())))


def _tokenizer_with(old: bytes, new: bytes) -> Callable[[], bytes]:
    def data() -> bytes:
        good = b.word_level_tokenizer_json()
        assert old in good
        return good.replace(old, new)

    return data


def _schema_replacing(old: bytes, new: bytes) -> Callable[[], bytes]:
    def data() -> bytes:
        good = b.schema_bytes()
        assert old in good
        return good.replace(old, new, 1)

    return data


def _text_threat(**fields: object) -> Callable[[pb.SubmitJobRequest], None]:
    def edit(request: pb.SubmitJobRequest) -> None:
        for name, value in fields.items():
            setattr(request.spec.text_threat_model, name, value)

    return edit


def _set_column(column: int, value: float, row: int = 4, dtype: type = np.float32):
    def change(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = x.astype(dtype)
        x[row, column] = value
        return x, y

    return change


def _one_hot_broken(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.copy()
    x[0, 3:6] = 1.0
    return x, y


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- the corpus -------------------------------------------------------------------------------

GOOD_X = b.good_arrays

CASES: list[Case] = [
    # Pickles whose unpickling would run code: never unpickled, wherever they are declared.
    upload_case(
        "pickle-declared-torchscript-trusted-off",
        lambda ctx: Upload(b.raw_pickle(ctx.marker("never")), fmt=TORCHSCRIPT),
        PRECONDITION,
        "TEMPERING_ALLOW_TRUSTED_FORMATS",
    ),
    pickle_case(
        "pickle-declared-torchscript-trusted-on",
        b.raw_pickle,
        TORCHSCRIPT,
        trusted=True,
    ),
    pickle_case(
        "torch-save-zip-declared-torchscript-trusted-on",
        b.torch_save_zip,
        TORCHSCRIPT,
        trusted=True,
    ),
    pickle_case(
        "torch-save-zip-declared-torch-export-trusted-on",
        b.torch_save_zip,
        TORCH_EXPORT,
        trusted=True,
    ),
    pickle_case("pickle-declared-onnx", b.raw_pickle, ONNX),
    pickle_case("torch-save-zip-declared-onnx", b.torch_save_zip, ONNX),
    pickle_case("pickle-declared-safetensors", b.raw_pickle, SAFETENSORS, edit=_safetensors_job),
    # Truncated or corrupt files.
    model_case("onnx-truncated-half", lambda ctx: b.truncated(good_model(), 0.5), INVALID, "ONNX"),
    model_case(
        "onnx-truncated-to-one-byte", lambda ctx: b.truncated(good_model(), 0.0), INVALID, "ONNX"
    ),
    model_case("onnx-truncated-last-byte", lambda ctx: good_model()[:-1], INVALID, "ONNX"),
    model_case(
        "onnx-corrupt-structure",
        # Keeps the leading ir_version field, so the file still looks like ONNX at first sight.
        lambda ctx: b.overwritten(good_model(), 2, b"\xff" * 48),
        INVALID,
        "ONNX",
    ),
    model_case(
        "text-declared-onnx", lambda ctx: b.static("not_a_model.txt"), INVALID, "declared as onnx"
    ),
    model_case(
        "torchscript-truncated",
        lambda ctx: b.truncated(b.torchscript_bytes(), 0.6),
        INVALID,
        "declared as torchscript",
        fmt=TORCHSCRIPT,
        trusted=True,
    ),
    model_case(
        "torchscript-corrupt-member",
        lambda ctx: b.corrupt_member(b.torchscript_bytes(), "data/0"),
        INVALID,
        "corrupt",
        fmt=TORCHSCRIPT,
        trusted=True,
    ),
    model_case(
        "torch-export-truncated",
        lambda ctx: b.truncated(b.torch_export_bytes(), 0.6),
        INVALID,
        "declared as torch_export",
        fmt=TORCH_EXPORT,
        trusted=True,
    ),
    model_case(
        "torch-export-corrupt-member",
        lambda ctx: b.corrupt_member(b.torch_export_bytes(), "models/model.json"),
        INVALID,
        "corrupt",
        fmt=TORCH_EXPORT,
        trusted=True,
    ),
    model_case(
        "safetensors-truncated",
        lambda ctx: b.truncated(b.safetensors_bytes(seed=1), 0.7),
        INVALID,
        "truncated",
        fmt=SAFETENSORS,
        edit=_safetensors_job,
    ),
    # Bytes that are not what the declared format says.
    model_case(
        "safetensors-declared-onnx",
        lambda ctx: b.safetensors_bytes(seed=2),
        INVALID,
        "declared as onnx but its bytes are safetensors",
    ),
    model_case(
        "onnx-declared-safetensors",
        lambda ctx: b.linear_onnx(seed=12),
        INVALID,
        "declared as safetensors but its bytes are an ONNX model",
        fmt=SAFETENSORS,
        edit=_safetensors_job,
    ),
    model_case(
        "zip-junk-declared-torch-export",
        lambda ctx: b.static("junk.zip"),
        INVALID,
        "declared as torch_export",
        fmt=TORCH_EXPORT,
        trusted=True,
    ),
    model_case(
        "onnx-declared-torchscript",
        lambda ctx: b.linear_onnx(seed=13),
        INVALID,
        "declared as torchscript but its bytes are an ONNX model",
        fmt=TORCHSCRIPT,
        trusted=True,
    ),
    upload_case(
        "zip-junk-declared-torch-export-trusted-off",
        lambda ctx: Upload(b.static("junk.zip"), fmt=TORCH_EXPORT),
        PRECONDITION,
        "export the model to ONNX",
    ),
    # ONNX external data pointing out of the store: refused, never read.
    model_case(
        "onnx-external-initializer-absolute",
        lambda ctx: b.external_initializer_onnx(str(ctx.bait)),
        INVALID,
        "self-contained",
    ),
    model_case(
        "onnx-external-initializer-climbs-out",
        lambda ctx: b.external_initializer_onnx("../../../../../outside/bait/secret.bin"),
        INVALID,
        "self-contained",
    ),
    model_case(
        "onnx-external-constant-absolute",
        lambda ctx: b.external_constant_onnx(str(ctx.bait)),
        INVALID,
        "self-contained",
    ),
    model_case(
        "onnx-external-constant-climbs-out",
        lambda ctx: b.external_constant_onnx("../../../../../outside/bait/secret.bin"),
        INVALID,
        "self-contained",
    ),
    model_case(
        "onnx-external-in-local-function",
        lambda ctx: b.external_function_onnx(str(ctx.bait)),
        INVALID,
        "self-contained",
    ),
    # ONNX bundles whose model or members point out of the bundle at the server's disk.
    model_case(
        "bundle-external-initializer-absolute",
        lambda ctx: b.bundled_external_onnx(str(ctx.bait)),
        INVALID,
        "has an absolute location",
        fmt=BUNDLE,
    ),
    model_case(
        "bundle-external-initializer-climbs-out",
        lambda ctx: b.bundled_external_onnx("../../../../../outside/bait/secret.bin"),
        INVALID,
        "points outside the model's folder",
        fmt=BUNDLE,
    ),
    model_case(
        "bundle-member-is-a-symlink-to-the-bait",
        lambda ctx: b.bundle_linking_to(str(ctx.bait)),
        INVALID,
        "is a symbolic link",
        fmt=BUNDLE,
    ),
    model_case(
        "bundle-member-climbs-out",
        lambda ctx: b.bundle_bytes(
            {"m.onnx": b.linear_onnx(seed=0), "../../../../outside/bait/x": b"x"}
        ),
        INVALID,
        "points outside the bundle",
        fmt=BUNDLE,
    ),
    # Models that are valid ONNX but not a classifier we can harden.
    model_case("onnx-two-inputs", lambda ctx: b.two_inputs_onnx(), INVALID, "exactly one input"),
    model_case("onnx-two-outputs", lambda ctx: b.two_outputs_onnx(), INVALID, "exactly one output"),
    model_case(
        "onnx-no-float-output", lambda ctx: b.integer_output_onnx(), INVALID, "must be float32"
    ),
    model_case(
        "onnx-input-shape-differs-from-data",
        lambda ctx: b.linear_proto(seed=14, features=32).SerializeToString(),
        INVALID,
        "expects inputs shaped (N, 32)",
    ),
    model_case(
        "onnx-endless-loop", lambda ctx: b.endless_loop_onnx(), INVALID, "control flow (Loop)"
    ),
    # Datasets.
    arrays_case("data-nan", with_arrays(lambda x, y: (_poke(x, np.nan), y)), "NaN or infinite"),
    arrays_case("data-inf", with_arrays(lambda x, y: (_poke(x, np.inf), y)), "NaN or infinite"),
    arrays_case(
        "data-labels-beyond-classes",
        with_arrays(lambda x, y: (x, np.where(y == 0, 10, y))),
        "labels must lie in [0, 9]",
    ),
    arrays_case(
        "data-negative-labels", with_arrays(lambda x, y: (x, y - 1)), "labels must be >= 0"
    ),
    arrays_case(
        "data-huge-labels",
        with_arrays(lambda x, y: (x, np.full(len(y), 2**63 + 5, np.uint64))),
        "class indices",
    ),
    arrays_case(
        "data-fractional-labels",
        with_arrays(lambda x, y: (x, y + 0.5)),
        "integer class labels",
    ),
    arrays_case(
        "data-empty",
        lambda: (np.zeros((0, b.FEATURES), np.float32), np.zeros(0, np.int64)),
        "empty",
    ),
    arrays_case(
        "data-x-and-y-counts-differ",
        with_arrays(lambda x, y: (x, y[:-1])),
        "x holds 64 samples but y holds 63 labels",
    ),
    arrays_case(
        "data-outside-input-bounds", with_arrays(lambda x, y: (x * 255, y)), "input bounds"
    ),
    arrays_case("data-x-one-dimensional", with_arrays(lambda x, y: (x[:, 0], y)), "x must have"),
    data_case(
        "data-missing-y",
        lambda ctx: b.zip_bytes({"x.npy": b.npy_bytes(GOOD_X()[0])}),
        "must hold arrays 'x' and 'y'",
    ),
    data_case(
        "data-object-array-pickle",
        lambda ctx: b.npz_with_object_array(ctx.marker("data-object-array-pickle")),
        "object array",
        markers=("data-object-array-pickle",),
    ),
    data_case(
        "data-object-array-pickle-as-eval",
        lambda ctx: b.npz_with_object_array(ctx.marker("data-object-array-pickle-as-eval")),
        "object array",
        as_eval=True,
        markers=("data-object-array-pickle-as-eval",),
    ),
    data_case(
        "data-header-claims-terabytes",
        lambda ctx: b.npz_lying_header((2**40, b.FEATURES)),
        "truncated or corrupt",
    ),
    data_case(
        "data-member-not-npy",
        lambda ctx: b.zip_bytes({"x.npy": b"hello", "y.npy": b"world"}),
        "not a readable .npy array",
    ),
    data_case("data-not-a-zip", lambda ctx: b.static("not_a_model.txt"), "not a readable .npz"),
    data_case(
        "data-pickle-declared-npz",
        lambda ctx: b.raw_pickle(ctx.marker("data-pickle-declared-npz")),
        "not a readable .npz",
        markers=("data-pickle-declared-npz",),
    ),
    data_case(
        "data-single-npy-declared-npz",
        lambda ctx: b.npy_bytes(GOOD_X()[0]),
        "not a readable .npz",
    ),
    data_case(
        "data-truncated-npz",
        lambda ctx: b.truncated(b.good_npz(seed=3), 0.5),
        "not a readable .npz",
    ),
    data_case(
        "eval-data-nan",
        lambda ctx: b.npz_bytes(*with_arrays(lambda x, y: (_poke(x, np.nan), y))()),
        "NaN or infinite",
        as_eval=True,
    ),
    # Upload streams.
    upload_case(
        "upload-declares-more-than-the-limit",
        lambda ctx: Upload(
            b"",
            declared_size=UPLOAD_LIMIT + 1,
            declared_sha256="a" * 64,
            chunks=_zero_chunks(OVERSIZED_STREAM_CHUNKS),
            max_chunks_read=0,
        ),
        EXHAUSTED,
        "TEMPERING_MAX_UPLOAD_BYTES",
    ),
    upload_case(
        "upload-streams-past-the-limit",
        lambda ctx: Upload(
            b"",
            declared_size=UPLOAD_LIMIT,
            declared_sha256="a" * 64,
            chunks=_zero_chunks(OVERSIZED_STREAM_CHUNKS),
            max_chunks_read=UPLOAD_LIMIT // CHUNK + 1,
        ),
        EXHAUSTED,
        "TEMPERING_MAX_UPLOAD_BYTES",
    ),
    upload_case(
        "upload-streams-past-its-declared-size",
        lambda ctx: Upload(
            b"",
            declared_size=1000,
            declared_sha256="a" * 64,
            chunks=_zero_chunks(OVERSIZED_STREAM_CHUNKS),
            max_chunks_read=1,
        ),
        INVALID,
        "more than the 1000 bytes",
    ),
    upload_case(
        "dataset-streams-past-the-limit",
        lambda ctx: Upload(
            b"",
            kind="dataset",
            fmt=NPZ,
            declared_size=UPLOAD_LIMIT,
            declared_sha256="b" * 64,
            chunks=_zero_chunks(OVERSIZED_STREAM_CHUNKS),
            max_chunks_read=UPLOAD_LIMIT // CHUNK + 1,
        ),
        EXHAUSTED,
        "TEMPERING_MAX_UPLOAD_BYTES",
        rpc="UploadDataset",
    ),
    upload_case(
        "upload-ends-early",
        lambda ctx: Upload(
            b.linear_onnx(seed=15), declared_size=len(b.linear_onnx(seed=15)) + 4096
        ),
        INVALID,
        "ended after",
    ),
    upload_case(
        "upload-checksum-mismatch",
        lambda ctx: Upload(b.linear_onnx(seed=16), declared_sha256=b.sha256(b"other bytes")),
        INVALID,
        "SHA-256",
    ),
    upload_case(
        "upload-checksum-not-hex",
        lambda ctx: Upload(b.linear_onnx(seed=17), declared_sha256="../" * 21 + "x"),
        INVALID,
        "SHA-256",
    ),
    upload_case(
        "upload-declared-size-zero",
        lambda ctx: Upload(b.linear_onnx(seed=18), declared_size=0),
        INVALID,
        "size_bytes",
    ),
    upload_case(
        "upload-chunk-before-header",
        lambda ctx: Upload(b"", messages=_chunk_first),
        INVALID,
        "must start with a header",
    ),
    upload_case(
        "upload-two-headers",
        lambda ctx: Upload(b"", messages=_two_headers),
        INVALID,
        "one header",
    ),
    upload_case(
        "upload-empty-stream",
        lambda ctx: Upload(b"", messages=_nothing),
        INVALID,
        "must start with a header",
    ),
    upload_case(
        "upload-unknown-model-format",
        lambda ctx: Upload(b.linear_onnx(seed=19), fmt=42),
        INVALID,
        "header.format",
    ),
    upload_case(
        "upload-unspecified-dataset-format",
        lambda ctx: Upload(good_data(), kind="dataset", fmt=pb.DATASET_FORMAT_UNSPECIFIED),
        INVALID,
        "header.format",
        rpc="UploadDataset",
    ),
    upload_case(
        "upload-name-too-long",
        lambda ctx: Upload(b.linear_onnx(seed=20), name="n" * 10_000),
        INVALID,
        "header.name",
    ),
    upload_case(
        "upload-name-is-a-path-is-only-a-label",
        lambda ctx: Upload(b.linear_onnx(seed=21), name="../../../../outside/pwned.onnx"),
        OK,
        "",
    ),
    upload_case(
        "upload-name-absolute-path-is-only-a-label",
        lambda ctx: Upload(b.linear_onnx(seed=22), name=str(ctx.marker("pwned.onnx"))),
        OK,
        "",
    ),
    # Parameters out of range at SubmitJob.
    param_case("param-negative-epsilon", _set(**{"spec.threat_model.epsilon": -0.1}), "epsilon"),
    param_case("param-nan-epsilon", _set(**{"spec.threat_model.epsilon": math.nan}), "eps"),
    param_case("param-infinite-epsilon", _set(**{"spec.threat_model.epsilon": math.inf}), "eps"),
    param_case(
        "param-unset-epochs-are-left-to-the-recipe",
        lambda r: r.spec.training.ClearField("epochs"),
        "",
        OK,
        check=_epochs_left_to_the_recipe,
    ),
    param_case(
        "param-zero-epochs",
        _set(**{"spec.training.epochs": 0}),
        "epochs must be between 1 and 1000, got 0",
    ),
    param_case(
        "param-too-many-epochs", _set(**{"spec.training.epochs": 100_000}), "epochs must be"
    ),
    param_case(
        "param-unset-temperature-means-the-default",
        _distillation(),
        "",
        OK,
        check=_temperature_is(100.0),
    ),
    param_case(
        "param-zero-temperature", _distillation(temperature=0.0), "temperature must be at least 1"
    ),
    param_case(
        "param-zero-teacher-epochs",
        _distillation(teacher_epochs=0),
        "spec.training.distillation.teacher_epochs must be greater than 0",
    ),
    param_case(
        "param-zero-batch-size",
        _set(**{"spec.training.batch_size": 0}),
        "batch_size must be between 1 and 8192",
    ),
    param_case(
        "param-zero-learning-rate",
        _set(**{"spec.training.learning_rate": 0.0}),
        "spec.training.learning_rate must be greater than 0",
    ),
    param_case(
        "param-zero-attack-steps",
        _pgd(attack_steps=0),
        "attack_steps must be between 1 and 1000",
    ),
    param_case(
        "param-zero-step-size",
        _set(**{"spec.training.fgsm.step_size": 0.0}),
        "spec.training.fgsm.step_size must be greater than 0",
    ),
    param_case(
        "param-negative-pgd-step-size",
        _pgd(step_size=-0.01),
        "spec.training.pgd.step_size must be greater than 0",
    ),
    param_case("param-zero-trades-beta", _trades(beta=0.0), "trades_beta must be positive"),
    param_case(
        "param-zero-eval-samples",
        _set(**{"spec.evaluation.samples": 0}),
        "evaluation samples must be between 1 and 100000",
    ),
    param_case(
        "param-temperature-below-one", _distillation(temperature=0.5), "temperature must be"
    ),
    param_case(
        "param-negative-temperature", _distillation(temperature=-3.0), "temperature must be"
    ),
    param_case("param-nan-temperature", _distillation(temperature=math.nan), "temperature must be"),
    param_case("param-unknown-method", _unknown_method, "needs a method"),
    param_case("param-no-method", _no_method, "needs a method"),
    param_case("param-no-spec", _no_spec, "spec is required"),
    param_case(
        "param-bounds-lower-above-upper",
        _set(**{"spec.threat_model.lower": [1.0], "spec.threat_model.upper": [0.0]}),
        "lower bound must be below",
    ),
    param_case(
        "param-bounds-lower-equals-upper",
        _set(**{"spec.threat_model.lower": [0.5], "spec.threat_model.upper": [0.5]}),
        "lower bound must be below",
    ),
    param_case(
        "param-bounds-counts-differ",
        _set(**{"spec.threat_model.lower": [0.0, 0.0], "spec.threat_model.upper": [1.0]}),
        "as many lower as upper",
    ),
    param_case(
        "param-bounds-nan",
        _set(**{"spec.threat_model.lower": [math.nan], "spec.threat_model.upper": [1.0]}),
        "finite",
    ),
    param_case(
        "param-too-many-eval-samples",
        _set(**{"spec.evaluation.samples": 10_000_000}),
        "evaluation samples must be between",
    ),
    param_case("param-unknown-norm", _set(**{"spec.threat_model.norm": 7}), "linf or l2"),
    param_case("param-unknown-suite", _set(**{"spec.evaluation.suite": 9}), "standard or fast"),
    param_case("param-seed-over-2-63", _set(**{"spec.seed": 2**64 - 1}), "seed"),
    param_case(
        "param-huge-batch-size", _set(**{"spec.training.batch_size": 2**32 - 1}), "batch_size"
    ),
    param_case(
        "param-nan-learning-rate",
        _set(**{"spec.training.learning_rate": math.nan}),
        "learning_rate",
    ),
    param_case(
        "param-negative-step-size", _set(**{"spec.training.fgsm.step_size": -1.0}), "step_size"
    ),
    param_case(
        "param-zero-warmup-means-no-warmup",
        _set(**{"spec.training.fgsm.eps_warmup_epochs": 0.0}),
        "",
        OK,
        check=_warmup_is_zero,
    ),
    param_case(
        "param-warmup-longer-than-training",
        _set(**{"spec.training.fgsm.eps_warmup_epochs": 5.0}),
        "eps_warmup_epochs",
    ),
    param_case("param-negative-trades-beta", _trades(beta=-1.0), "trades_beta"),
    param_case("param-too-many-attack-steps", _trades(attack_steps=1_000_000), "attack_steps"),
    param_case(
        "param-hard-label-weight-over-one", _distillation(hard_label_weight=2.0), "hard_label"
    ),
    param_case(
        "param-unknown-model-id",
        _set(**{"spec.model_id": "model-" + "0" * 64}),
        "UploadModel",
        NOT_FOUND,
    ),
    param_case(
        "param-model-id-is-a-path",
        _set(**{"spec.model_id": "../../../../etc/passwd"}),
        "UploadModel",
        NOT_FOUND,
    ),
    param_case(
        "param-dataset-id-names-a-model",
        lambda r: setattr(r.spec, "train_dataset_id", r.spec.model_id),
        "UploadDataset",
        NOT_FOUND,
    ),
    model_case(
        "param-safetensors-without-architecture",
        lambda ctx: b.safetensors_bytes(seed=3),
        INVALID,
        "spec.architecture",
        fmt=SAFETENSORS,
    ),
    param_case("param-bad-label-key", lambda r: r.labels.update({"../x": "1"}), "label key"),
    param_case(
        "param-idempotency-key-too-long",
        _set(idempotency_key="k" * 10_000),
        "idempotency_key",
    ),
    # red-team findings of issue 15: every string bounded and free of NUL (D, E), eps bounded by
    # float32 and the input domain (F), time limits that mean something, quoted values cut (J)
    param_case(
        "unbounded-architecture", _set(**{"spec.architecture": "m" * 3_500_000}), "at most 4096"
    ),
    param_case("nul-in-idempotency-key", _set(idempotency_key="key\x00x"), "U+0000"),
    param_case("nul-in-label-value", lambda r: r.labels.update({"team": "a\x00b"}), "U+0000"),
    param_case("nul-in-model-id", _set(**{"spec.model_id": "model-\x00"}), "U+0000"),
    param_case("nul-in-architecture", _set(**{"spec.architecture": "mlp\x00"}), "U+0000"),
    param_case("eps-beyond-float32", _set(**{"spec.threat_model.epsilon": 1e300}), "float32"),
    param_case("eps-covers-the-whole-domain", _set(**{"spec.threat_model.epsilon": 5.0}), "width"),
    param_case("time-limit-nan", _set(**{"spec.time_limit_seconds": float("nan")}), "time_limit"),
    param_case("time-limit-negative", _set(**{"spec.time_limit_seconds": -1.0}), "time_limit"),
    param_case(
        "time-limit-a-nanosecond", _set(**{"spec.time_limit_seconds": 1e-9}), "at least 1 second"
    ),
    param_case(
        "megabyte-model-id",
        _set(**{"spec.model_id": "m" * 1_000_000}),
        "256",
    ),
    upload_case(
        "nul-in-upload-name",
        lambda ctx: Upload(good_data(), kind="dataset", fmt=NPZ, name="train\x00.npz"),
        INVALID,
        "U+0000",
        rpc="UploadDataset",
    ),
    # Text models (docs/text.md): labelled texts, JSON Lines or CSV.
    text_line_case("text-line-nested-too-deeply", _nested(100_000), "line 3: not JSON (nested"),
    text_line_case(
        "text-unpaired-surrogate-in-a-sampled-text",
        b'{"text": "the cat \\ud800 likes", "label": 0}',
        "line 1: 'text' holds an unpaired surrogate (U+D800",
        at=1,
    ),
    text_line_case(
        "text-unpaired-surrogate-past-the-sampled-texts",
        b'{"text": "the cat \\udfff likes", "label": 0}',
        "line 9: 'text' holds an unpaired surrogate (U+DFFF",
        at=9,
    ),
    text_line_case(
        "text-invalid-utf8",
        b'{"text": "the \xff\xfe cat", "label": 0}',
        "line 3: not UTF-8 text (byte 0xff",
    ),
    text_line_case(
        "text-raw-nul-byte",
        b'{"text": "the \x00 cat", "label": 0}',
        "line 3: not JSON (Invalid control character",
    ),
    text_line_case(
        "text-one-line-of-4-mb",
        b'{"text": "' + b"cat " * 1_000_000 + b'", "label": 0}',
        "line 3 is longer than 2,097,152 bytes; a text may have at most 100,000 characters",
    ),
    text_line_case(
        "text-of-a-million-characters",
        b'{"text": "' + b"cat " * 250_000 + b'", "label": 0}',
        "line 3: the text has 1,000,000 characters, the limit is 100,000",
    ),
    upload_case(
        "text-100-mb-line-streamed",
        lambda ctx: Upload(
            b"",
            kind="dataset",
            fmt=JSONL,
            declared_size=UPLOAD_LIMIT,
            declared_sha256="c" * 64,
            chunks=lambda: (b'{"text": "' + b"a" * (CHUNK - 10) for _ in range(100)),
            max_chunks_read=UPLOAD_LIMIT // CHUNK + 1,
        ),
        EXHAUSTED,
        "TEMPERING_MAX_UPLOAD_BYTES",
        rpc="UploadDataset",
    ),
    text_line_case(
        "text-label-beyond-the-classes",
        b'{"text": "the cat", "label": 7}',
        "line 3: label 7 is out of range for a model with 2 classes",
    ),
    text_line_case(
        "text-label-negative", b'{"text": "the cat", "label": -1}', "line 3: label -1 is negative"
    ),
    text_line_case(
        "text-label-of-30-digits",
        b'{"text": "the cat", "label": ' + b"9" * 30 + b"}",
        "is too large",
    ),
    text_line_case(
        "text-label-beyond-float64",
        b'{"text": "the cat", "label": 1e400}',
        "'label' must be an integer class index",
    ),
    text_line_case(
        "text-label-nan", b'{"text": "the cat", "label": NaN}', "'label' must be an integer"
    ),
    text_case("text-only-blank-lines", "holds no examples", train=lambda: b"\n\n   \n"),
    text_case("text-binary-junk", "line 1: not JSON", train=lambda: bytes(range(256)) * 40),
    text_case(
        "text-one-json-array",
        "send JSON Lines instead",
        train=lambda: json.dumps(b.text_rows()).encode(),
    ),
    text_case(
        "text-csv-field-past-the-readers-limit",
        "longer than the CSV reader's limit",
        train=lambda: b"text,label\n" + b"cat " * 50_000 + b",1\nthe dog,0\n",
        train_fmt=CSV,
    ),
    text_case(
        "text-fgsm",
        "fgsm is not offered for text models",
        edit=lambda r: r.spec.training.fgsm.SetInParent(),
    ),
    text_case(
        "text-max-length-2-32",
        "max_length must be between 1 and 8192",
        edit=_text_threat(max_length=2**32 - 1),
    ),
    text_case(
        "text-word-share-nan",
        "word_share must lie in (0, 1]",
        edit=_text_threat(word_share=math.nan),
    ),
    text_case(
        "text-embedding-eps-1e300",
        "embedding_eps must lie in (0, 10]",
        edit=_text_threat(embedding_eps=1e300),
    ),
    text_case(
        "text-tokenizer-id-names-a-model",
        "UploadTokenizer",
        edit=lambda r: setattr(r.spec, "tokenizer_id", r.spec.model_id),
        code=NOT_FOUND,
    ),
    text_case(
        "text-tokenizer-id-of-4294967295",
        "it produces ids up to 4294967295",
        tokenizer=_tokenizer_with(b'"cat":3', b'"cat":4294967295'),
    ),
    # Tokenizers, refused at upload.
    tokenizer_upload_case(
        "tokenizer-binary-junk", lambda: bytes(range(256)) * 40, "is not JSON (not UTF-8 text"
    ),
    tokenizer_upload_case(
        "tokenizer-nested-too-deeply", lambda: _nested(200_000), "nested too deeply"
    ),
    tokenizer_upload_case(
        "tokenizer-number-of-5000-digits",
        lambda: b'{"model": {"x": ' + b"9" * 5000 + b"}}",
        "a number with too many digits",
    ),
    tokenizer_upload_case(
        "tokenizer-invalid-utf8-in-a-token",
        _tokenizer_with(b'"cat"', b'"c\xffat"'),
        "not UTF-8 text",
    ),
    tokenizer_upload_case(
        "tokenizer-unpaired-surrogate-in-a-token",
        _tokenizer_with(b'"cat"', b'"c\\ud800at"'),
        "not a tokenizer the Hugging Face tokenizers library can read",
    ),
    tokenizer_upload_case(
        "tokenizer-id-beyond-u32",
        _tokenizer_with(b'"cat":3', b'"cat":99999999999999999999'),
        "library can read",
    ),
    tokenizer_upload_case(
        "tokenizer-negative-id", _tokenizer_with(b'"cat":3', b'"cat":-3'), "library can read"
    ),
    tokenizer_upload_case(
        "tokenizer-empty-vocabulary",
        lambda: b'{"version":"1.0","model":{"type":"WordLevel","vocab":{},"unk_token":"[UNK]"}}',
        "empty vocabulary",
    ),
    tokenizer_upload_case(
        "tokenizer-regex-of-50000-groups",
        lambda: json.dumps(
            {
                **json.loads(b.word_level_tokenizer_json()),
                "pre_tokenizer": {
                    "type": "Split",
                    "pattern": {"Regex": "(a+)+" * 50_000},
                    "behavior": "Isolated",
                    "invert": False,
                },
            }
        ).encode(),
        "library can read",
    ),
    upload_case(
        "tokenizer-streams-past-the-upload-limit",
        lambda ctx: Upload(
            b"",
            kind="tokenizer",
            declared_size=UPLOAD_LIMIT,
            declared_sha256="d" * 64,
            chunks=_zero_chunks(OVERSIZED_STREAM_CHUNKS),
            max_chunks_read=UPLOAD_LIMIT // CHUNK + 1,
        ),
        EXHAUSTED,
        "TEMPERING_MAX_UPLOAD_BYTES",
        rpc="UploadTokenizer",
    ),
    # Feature schemas (docs/tabular.md), refused at upload.
    schema_upload_case(
        "schema-nested-too-deeply",
        lambda: b'{"features": ' + _nested(400_000) + b"}",
        "nested too deeply",
    ),
    schema_upload_case(
        "schema-integer-of-5000-digits",
        _schema_replacing(b'"upper": 1000', b'"upper": ' + b"9" * 5000),
        "beyond the range of a 64-bit float",
    ),
    schema_upload_case(
        "schema-coefficient-of-400-digits",
        lambda: b.schema_with_constraints({"terms": {"amount": 10**400}, "op": "<=", "value": 1}),
        "beyond the range of a 64-bit float",
    ),
    schema_upload_case(
        "schema-bound-1e400", _schema_replacing(b'"upper": 1000', b'"upper": 1e400'), "1e400"
    ),
    schema_upload_case(
        "schema-nan-bound", _schema_replacing(b'"lower": 0', b'"lower": NaN'), "got NaN"
    ),
    schema_upload_case(
        "schema-infinite-budget",
        _schema_replacing(b'"absolute": 2', b'"absolute": Infinity'),
        "a budget must be finite and non-negative",
    ),
    schema_upload_case(
        "schema-feature-named-twice",
        lambda: b.schema_bytes({"features": [b.TABULAR_SCHEMA["features"][0]] * 2}),  # type: ignore[index]
        "names 'amount' twice",
    ),
    schema_upload_case(
        "schema-constraint-names-a-categorical-group",
        lambda: b.schema_with_constraints({"terms": {"merchant": 1}, "op": "<=", "value": 1}),
        "a categorical feature: name its columns",
    ),
    schema_upload_case(
        "schema-two-equalities-recompute-one-column",
        lambda: b.schema_with_constraints(
            *[{"terms": {"amount": 1, "tx_24h": -1}, "op": "==", "dependent": "amount"}] * 2,
            unbudgeted=0,
        ),
        "both recompute 'amount'",
    ),
    schema_upload_case(
        "schema-nul-in-a-feature-name",
        lambda: b.schema_with_feature(0, name="amo\x00unt"),
        "holds U+0000",
    ),
    schema_upload_case(
        "schema-unpaired-surrogate-in-a-name",
        _schema_replacing(b'"amount"', b'"am\\ud800ount"'),
        "holds U+D800",
    ),
    schema_upload_case(
        "schema-900-kb-kind", lambda: b.schema_with_feature(0, kind="k" * 900_000), "kind must be"
    ),
    schema_upload_case(
        "schema-20000-features",
        lambda: b.schema_bytes({"features": [{"name": f"f{i}"} for i in range(20_000)]}),
        "between 1 and 10000 features",
    ),
    schema_upload_case(
        "schema-1001-constraints",
        lambda: b.schema_with_constraints(
            *[{"terms": {"amount": 1}, "op": "<=", "value": 1000}] * 1001
        ),
        "at most 1000 linear constraints",
    ),
    schema_upload_case(
        "schema-yaml", lambda: b"features:\n  - name: amount\n", "is not valid JSON"
    ),
    schema_upload_case("schema-binary-junk", lambda: bytes(range(256)) * 40, "not valid JSON"),
    upload_case(
        "schema-streams-past-a-megabyte",
        lambda ctx: Upload(
            b"",
            kind="schema",
            declared_size=1_000_000,
            declared_sha256="e" * 64,
            chunks=_zero_chunks(OVERSIZED_STREAM_CHUNKS),
            max_chunks_read=1,
        ),
        INVALID,
        "a schema may have at most 1000000",
        rpc="UploadSchema",
    ),
    # Tabular data (.npz) checked against the schema at SubmitJob.
    tabular_arrays_case("tabular-nan-feature", _set_column(0, math.nan), "NaN or infinite"),
    tabular_case(
        "tabular-infinite-value-of-an-unbounded-feature",
        "NaN or infinite",
        schema=lambda: b.schema_with_feature(0, upper=None, budget={"absolute": 5}),
        data=lambda ctx: b.npz_bytes(*_set_column(0, math.inf)(*b.tabular_arrays())),
    ),
    tabular_arrays_case(
        "tabular-float64-beyond-float32", _set_column(0, 1e300, dtype=np.float64), "NaN or infinite"
    ),
    tabular_arrays_case("tabular-uint8-data", lambda x, y: (x.astype(np.uint8), y), "x is uint8"),
    tabular_case(
        "tabular-object-array-pickle",
        "object array",
        data=lambda ctx: b.npz_with_object_array(ctx.marker("tabular-object-array-pickle")),
        markers=("tabular-object-array-pickle",),
    ),
    tabular_arrays_case(
        "tabular-strings", lambda x, y: (x.astype("U8"), y), "x must be float32 or uint8"
    ),
    tabular_arrays_case(
        "tabular-complex", lambda x, y: (x.astype(np.complex64), y), "got dtype complex64"
    ),
    tabular_arrays_case(
        "tabular-structured-dtype",
        lambda x, y: (np.zeros(len(x), dtype=[("a", "<f4"), ("b", "<i4")]).reshape(-1, 1), y),
        "x must be float32 or uint8",
    ),
    tabular_arrays_case(
        "tabular-lengths-differ",
        lambda x, y: (x, y[:-3]),
        "x holds 32 samples but y holds 29 labels",
    ),
    tabular_arrays_case(
        "tabular-group-not-one-hot", _one_hot_broken, "'merchant' is not one-hot in row 0"
    ),
    tabular_arrays_case(
        "tabular-binary-feature-is-2", _set_column(2, 2.0), "'foreign' is 2 in row 4"
    ),
    tabular_case(
        "tabular-data-breaks-a-constraint",
        "does not hold in row 0",
        schema=lambda: b.schema_with_constraints({"terms": {"amount": 1}, "op": "<=", "value": -5}),
    ),
    tabular_case(
        "tabular-eps-1e300",
        "float32",
        edit=_set(**{"spec.threat_model.epsilon": 1e300}),
    ),
    tabular_case(
        "tabular-schema-id-names-a-model",
        "UploadSchema",
        edit=lambda r: setattr(r.spec, "feature_schema_id", r.spec.model_id),
        code=NOT_FOUND,
    ),
]


def _poke(x: np.ndarray, value: float) -> np.ndarray:
    x = x.copy()
    x[3, 5] = value
    return x
