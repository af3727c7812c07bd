"""A tabular model's feature schema through a real gRPC server on port 0: a schema is read by the
engine's schema reader at upload and refused, naming the feature, if it is bad; at SubmitJob the
data are checked against it, naming feature and row, before a worker spends time; each refusal
has a status and a message that say what to fix, and the server goes on serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from service_support import make_settings
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.auth import hash_key, new_key
from service.api.server import start_server
from service.core.limits import MAX_SCHEMA_BYTES
from tests.shared_support import chunked, dataset_requests, model_requests, npz_bytes, sha256

pytestmark = pytest.mark.slow

Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    pytest.importorskip("torch")
    from tests.engine.tabular_support import write_case

    return write_case(tmp_path_factory.mktemp("tabular"), n=200)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Metadata]:
    return {tenant: (("authorization", f"Bearer {new_key()}"),) for tenant in ("alice", "bob")}


@pytest.fixture(scope="module")
def stub(
    tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Metadata]
) -> Iterator[pb_grpc.HardeningServiceStub]:
    """One server for the module, with two tenants: every refusal leaves it serving the next."""
    folder = tmp_path_factory.mktemp("server")
    key_file = folder / "api-keys"
    key_file.write_text(
        "".join(f"{t}:{hash_key(m[0][1].removeprefix('Bearer '))}\n" for t, m in keys.items())
    )
    running = start_server(make_settings(folder, api_keys_file=key_file))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield pb_grpc.HardeningServiceStub(channel)
    finally:
        running.stop(grace=0)


@pytest.fixture(scope="module")
def alice(keys: dict[str, Metadata]) -> Metadata:
    return keys["alice"]


def schema_requests(data: bytes, *, size: int | None = None) -> Iterator[pb.UploadSchemaRequest]:
    yield pb.UploadSchemaRequest(
        header=pb.SchemaUploadHeader(
            name="schema.json", size_bytes=len(data) if size is None else size, sha256=sha256(data)
        )
    )
    for chunk in chunked(data):
        yield pb.UploadSchemaRequest(chunk=chunk)


def upload_schema(stub: pb_grpc.HardeningServiceStub, data: bytes, metadata: Metadata) -> str:
    return stub.UploadSchema(schema_requests(data), metadata=metadata, timeout=60).artifact_id


@pytest.fixture(scope="module")
def ids(
    stub: pb_grpc.HardeningServiceStub, case: tuple[Path, Path, Path], alice: Metadata
) -> dict[str, str]:
    model, data, schema = case
    return {
        "model": stub.UploadModel(
            model_requests(model.read_bytes()), metadata=alice, timeout=60
        ).artifact_id,
        "train": stub.UploadDataset(
            dataset_requests(data.read_bytes()), metadata=alice, timeout=60
        ).artifact_id,
        "schema": upload_schema(stub, schema.read_bytes(), alice),
    }


def tabular_spec(ids: dict[str, str], *, eps: float = 0.5, **overrides: str) -> pb.JobSpec:
    names = {**ids, **overrides}
    return pb.JobSpec(
        model_id=names["model"],
        train_dataset_id=names["train"],
        eval_dataset_id=names.get("eval", ""),
        feature_schema_id=names["schema"],
        threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=eps),
        training=pb.Training(fgsm=pb.Fgsm(), epochs=1),
    )


def still_serving(stub: pb_grpc.HardeningServiceStub, metadata: Metadata) -> None:
    info = stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=metadata, timeout=10)
    assert info.api == "tempering.v1"


def upload_refused(
    stub: pb_grpc.HardeningServiceStub, document: Any, metadata: Metadata
) -> tuple[grpc.StatusCode, str]:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(grpc.RpcError) as caught:
        upload_schema(stub, data, metadata)
    still_serving(stub, metadata)
    return caught.value.code(), caught.value.details()


def submit_refused(
    stub: pb_grpc.HardeningServiceStub, spec: pb.JobSpec, metadata: Metadata
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitJob(pb.SubmitJobRequest(spec=spec), metadata=metadata, timeout=60)
    still_serving(stub, metadata)
    return caught.value.code(), caught.value.details()


def schema_with(change: dict[str, Any]) -> dict[str, Any]:
    from tests.engine.tabular_support import SCHEMA

    first = {**SCHEMA["features"][0], **change}
    return {"features": [first, *SCHEMA["features"][1:]]}


# --- uploads ----------------------------------------------------------------------------------


def test_a_schema_is_kept_and_named_by_its_content(
    stub: pb_grpc.HardeningServiceStub, case: tuple[Path, Path, Path], alice: Metadata
) -> None:
    data = case[2].read_bytes()

    assert upload_schema(stub, data, alice) == upload_schema(stub, data, alice)


def test_a_schema_that_is_not_json_is_refused_at_upload(
    stub: pb_grpc.HardeningServiceStub, alice: Metadata
) -> None:
    code, message = upload_refused(stub, b"amount: 0..1000\n", alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "the feature schema is not valid JSON" in message


def test_a_schema_with_an_unknown_key_is_refused_naming_the_feature(
    stub: pb_grpc.HardeningServiceStub, alice: Metadata
) -> None:
    code, message = upload_refused(stub, schema_with({"maximum": 5}), alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "feature 'amount': unknown keys ['maximum']" in message


def test_a_schema_with_contradictory_bounds_is_refused_naming_the_feature(
    stub: pb_grpc.HardeningServiceStub, alice: Metadata
) -> None:
    code, message = upload_refused(stub, schema_with({"lower": 10, "upper": 5}), alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "feature 'amount': lower (10.0) must be below upper (5.0)" in message


def test_an_oversize_schema_is_refused_before_its_bytes_are_read(
    stub: pb_grpc.HardeningServiceStub, alice: Metadata
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.UploadSchema(
            schema_requests(b"{}", size=MAX_SCHEMA_BYTES + 1), metadata=alice, timeout=60
        )

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"a schema may have at most {MAX_SCHEMA_BYTES}" in caught.value.details()
    still_serving(stub, alice)


# --- SubmitJob --------------------------------------------------------------------------------


def test_a_tabular_job_with_eps_above_one_in_the_schemas_units_is_queued(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str], alice: Metadata
) -> None:
    job = stub.SubmitJob(
        pb.SubmitJobRequest(spec=tabular_spec(ids, eps=5.0)), metadata=alice, timeout=60
    )

    assert job.state == pb.JOB_STATE_QUEUED
    assert job.spec.feature_schema_id == ids["schema"]
    assert job.spec.threat_model.epsilon == 5.0


def test_an_infinite_eps_is_refused_under_a_schema(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str], alice: Metadata
) -> None:
    code, message = submit_refused(stub, tabular_spec(ids, eps=float("inf")), alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "epsilon must be a finite float32 number" in message


def test_data_outside_the_schema_is_refused_naming_feature_and_row(
    stub: pb_grpc.HardeningServiceStub,
    ids: dict[str, str],
    case: tuple[Path, Path, Path],
    alice: Metadata,
) -> None:
    with np.load(case[1]) as arrays:
        x, y = arrays["x"].copy(), arrays["y"]
    x[7, 0] = 2000.0  # amount's upper bound is 1000
    bad = stub.UploadDataset(
        dataset_requests(npz_bytes(x, y)), metadata=alice, timeout=60
    ).artifact_id

    code, message = submit_refused(stub, tabular_spec(ids, train=bad), alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "training data: feature 'amount' is 2000 in row 7, outside its range" in message


def test_evaluation_data_outside_the_schema_is_refused_naming_the_dataset(
    stub: pb_grpc.HardeningServiceStub,
    ids: dict[str, str],
    case: tuple[Path, Path, Path],
    alice: Metadata,
) -> None:
    with np.load(case[1]) as arrays:
        x, y = arrays["x"].copy(), arrays["y"]
    x[3, 2] = 2.5  # tx_24h is an integer
    bad = stub.UploadDataset(
        dataset_requests(npz_bytes(x, y)), metadata=alice, timeout=60
    ).artifact_id

    code, message = submit_refused(stub, tabular_spec(ids, eval=bad), alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "evaluation data: integer feature 'tx_24h' is 2.5 in row 3" in message


def test_a_schema_whose_constraint_names_an_unknown_feature_is_refused_at_upload(
    stub: pb_grpc.HardeningServiceStub, alice: Metadata
) -> None:
    from tests.engine.tabular_support import SCHEMA

    document = {**SCHEMA, "constraints": [{"terms": {"fees": 1}, "op": "<=", "value": 1}]}

    code, message = upload_refused(stub, document, alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "linear constraint 1 ('linear constraint 1') names unknown feature 'fees'" in message


def test_evaluation_data_that_breaks_a_linear_constraint_is_refused_naming_it(
    stub: pb_grpc.HardeningServiceStub,
    ids: dict[str, str],
    case: tuple[Path, Path, Path],
    alice: Metadata,
) -> None:
    from tests.engine.tabular_support import SCHEMA

    with np.load(case[1]) as arrays:
        x, y = arrays["x"].copy(), arrays["y"]
    floor = float((x[:, 0].astype(np.float64) + x[:, 2]).min())
    assert floor > 1, "the generated data should keep amount + tx_24h away from 0"
    constraint = {"name": "floor", "terms": {"amount": 1, "tx_24h": 1}, "op": ">=", "value": floor}
    schema = upload_schema(
        stub, json.dumps({**SCHEMA, "constraints": [constraint]}).encode(), alice
    )
    x[5, 0], x[5, 2] = 0.0, 0.0
    bad = stub.UploadDataset(
        dataset_requests(npz_bytes(x, y)), metadata=alice, timeout=60
    ).artifact_id

    code, message = submit_refused(stub, tabular_spec(ids, schema=schema, eval=bad), alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "evaluation data: linear constraint 1 ('floor': amount + tx_24h >= " in message
    assert "does not hold in row 5" in message


def test_a_schema_feature_the_data_does_not_have_is_refused(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str], alice: Metadata
) -> None:
    from tests.engine.tabular_support import SCHEMA

    extra = {"features": [*SCHEMA["features"], {"name": "velocity", "lower": 0, "upper": 1}]}
    schema = upload_schema(stub, json.dumps(extra).encode(), alice)

    code, message = submit_refused(stub, tabular_spec(ids, schema=schema), alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "the schema describes 10 columns but x has 9" in message


def test_another_tenants_schema_is_not_found_like_an_unknown_one(
    stub: pb_grpc.HardeningServiceStub,
    ids: dict[str, str],
    case: tuple[Path, Path, Path],
    keys: dict[str, Metadata],
) -> None:
    bob = keys["bob"]
    bobs = {
        "model": stub.UploadModel(
            model_requests(case[0].read_bytes()), metadata=bob, timeout=60
        ).artifact_id,
        "train": stub.UploadDataset(
            dataset_requests(case[1].read_bytes()), metadata=bob, timeout=60
        ).artifact_id,
        "schema": ids["schema"],
    }
    unknown = "schema-" + "0" * 64

    theirs = submit_refused(stub, tabular_spec(bobs), bob)
    missing = submit_refused(stub, tabular_spec(bobs, schema=unknown), bob)

    assert theirs[0] is missing[0] is grpc.StatusCode.NOT_FOUND
    assert theirs[1] == missing[1].replace(unknown, ids["schema"])


def test_a_schema_beside_a_tokenizer_is_refused(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str], alice: Metadata
) -> None:
    from tests.engine.text import support
    from tests.service.text_support import tokenizer_requests

    tokenizer = support.word_level_tokenizer(support.sentences(20)).to_str().encode()
    spec = tabular_spec(ids)
    spec.tokenizer_id = stub.UploadTokenizer(
        tokenizer_requests(tokenizer), metadata=alice, timeout=60
    ).artifact_id

    code, message = submit_refused(stub, spec, alice)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "a feature schema describes rows of features" in message
