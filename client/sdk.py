"""Python SDK of the Tempering service.

>>> from client import HardeningClient
>>> with HardeningClient("localhost:50051") as api:
...     outcome = api.harden("model.onnx", "train.npz", method="pgd", eps=0.1,
...                          output="hardened.onnx")

Every method raises a :class:`client.errors.ClientError` subclass on failure, never a raw
:class:`grpc.RpcError`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from tempering.v1 import hardening_pb2, hardening_pb2_grpc

from client import convert
from client.bundle import model_upload
from client.domain import (
    ArtifactKind,
    DatasetFormat,
    HardeningOutcome,
    HardeningParams,
    Job,
    JobDeletion,
    JobEvent,
    JobPage,
    JobSpec,
    JobState,
    MlflowTracking,
    ModelFormat,
    ServerInfo,
    TextThreat,
    dataset_format_of,
    format_from_suffix,
)
from client.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    IntegrityError,
    JobFailed,
    WaitTimeout,
    from_rpc_error,
    translated,
    translated_stream,
)
from client.idempotency import next_idempotency_key
from client.layout import OutputLayout, plot_beside, relink_plot
from client.model_bundle_out import save_bundle
from client.retry import (
    DEFAULT_RETRY,
    NO_RETRY,
    Deadline,
    OutOfTime,
    RetryPolicy,
    call_with_retry,
    status_code,
)
from client.transfer import FileDigest, digest_file, read_chunks, write_verified

T = TypeVar("T")
EventCallback = Callable[[JobEvent], None]
DEFAULT_CALL_TIMEOUT_SECONDS = 60.0
"""Deadline of each short call (submit, get, list, cancel) unless the client is given another."""
MAX_RESUBMISSIONS = 10
"""How many failed jobs ``harden(..., resubmit_if_failed=True)`` steps over before giving up."""
WATCH_RECONNECTS = 5
"""Times ``wait`` re-opens a watch stream the server dropped before giving up."""
RESUBSCRIBE_PAUSE_SECONDS = 1.0
"""Pause before ``wait`` watches again a stream that ended before the job did."""


@dataclass(frozen=True)
class TlsConfig:
    """TLS for the channel. Without files, the system's root certificates verify the server."""

    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_cert),
            private_key=read(self.client_key),
            certificate_chain=read(self.client_cert),
        )


class HardeningClient:
    """A connection to one Tempering server.

    ``tls``: None or False for a plaintext channel, True for TLS with the system's roots, a
    :class:`TlsConfig`, or ready-made :class:`grpc.ChannelCredentials`. ``api_key`` travels as
    ``authorization: Bearer <key>`` metadata. ``timeout`` bounds each short call in seconds
    (None: no bound); the streams (uploads, downloads, watching) are bounded only by their own
    arguments and by :meth:`deadline`.

    ``retry`` says how calls that are safe to send again are retried on UNAVAILABLE and
    DEADLINE_EXCEEDED (see :mod:`client.retry`): get, list, cancel, the uploads, the downloads,
    and submit when it carries an idempotency key. ``NO_RETRY`` turns it off.
    """

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        tls: bool | TlsConfig | grpc.ChannelCredentials | None = None,
        timeout: float | None = DEFAULT_CALL_TIMEOUT_SECONDS,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retry = retry
        self._deadline: Deadline | None = None
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self._channel = _open_channel(target, tls)
        self._stub = hardening_pb2_grpc.HardeningServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> HardeningClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[Deadline]:
        """Bound every call made inside the ``with`` block, retries and waiting included, by
        ``seconds`` in all; a call the deadline cuts short raises :class:`DeadlineExceeded`.
        A job already submitted goes on: cancel it if you want it stopped. The deadline belongs
        to the client, so do not share one client between threads while it is set.

        >>> with api.deadline(3600):
        ...     outcome = api.harden("model.onnx", "train.npz", method="pgd", eps=0.1,
        ...                          output="hardened.onnx")
        """
        previous = self._deadline
        self._deadline = Deadline.after(seconds)
        try:
            yield self._deadline
        finally:
            self._deadline = previous

    # -----------------------------------------------------------------------------------------
    # Uploads

    @translated
    def upload_model(
        self, path: str | os.PathLike[str], format: ModelFormat | str | None = None
    ) -> str:
        """Upload a model file and return its artifact id. ``format`` defaults to the one the
        file's suffix names (.onnx, .tar or .zip for an ONNX bundle, .safetensors, .pt, .pt2).
        An ONNX model whose tensors live in external data files (``torch.onnx.export(...,
        dynamo=True)`` writes ``model.onnx.data``) is sent as an ONNX bundle with exactly the
        files it references, made on the fly (:mod:`client.bundle`, docs/model-bundles.md)."""
        path = Path(path)
        model_format = ModelFormat(format) if format else format_from_suffix(path)
        if model_format is None:
            raise ValueError(
                f"cannot tell the format of {path.name} from its suffix; pass format= one of"
                f" {[f.value for f in ModelFormat]}"
            )
        upload = model_upload(path, model_format)

        def attempt(timeout: float | None) -> str:
            messages = convert.model_upload_requests(
                upload.name, upload.format, upload.digest, upload.chunks()
            )
            return convert.upload_id(
                self._stub.UploadModel(messages, metadata=self._metadata, timeout=timeout)
            )

        return self._call(f"uploading {path.name}", attempt, stream=True)

    @translated
    def upload_dataset(
        self, path: str | os.PathLike[str], format: DatasetFormat | str | None = None
    ) -> str:
        """Upload a dataset: an .npz archive holding ``x`` (inputs) and ``y`` (integer labels),
        or a text model's labelled texts as JSON Lines or CSV (docs/text.md). ``format``
        defaults to the one the file's suffix names, else its first bytes."""
        path = Path(path)
        dataset_format = DatasetFormat(format) if format else dataset_format_of(path)
        digest = digest_file(path)

        def attempt(timeout: float | None) -> str:
            messages = convert.dataset_upload_requests(
                path.name, digest, read_chunks(path), dataset_format
            )
            return convert.upload_id(
                self._stub.UploadDataset(messages, metadata=self._metadata, timeout=timeout)
            )

        return self._call(f"uploading {path.name}", attempt, stream=True)

    @translated
    def upload_tokenizer(self, path: str | os.PathLike[str]) -> str:
        """Upload a text model's Hugging Face ``tokenizer.json``; the server refuses a file
        that is too large, not JSON or not a tokenizer (:class:`~client.errors.InvalidInput`).
        A server older than this call raises :class:`~client.errors.ServerError` with code
        UNIMPLEMENTED."""
        path = Path(path)
        digest = digest_file(path)

        def attempt(timeout: float | None) -> str:
            messages = convert.tokenizer_upload_requests(path.name, digest, read_chunks(path))
            return convert.upload_id(
                self._stub.UploadTokenizer(messages, metadata=self._metadata, timeout=timeout)
            )

        return self._call(f"uploading {path.name}", attempt, stream=True)

    @translated
    def upload_schema(self, path: str | os.PathLike[str]) -> str:
        """Upload a tabular model's feature schema (JSON, docs/tabular.md); the server reads it
        as the engine will and refuses a file that is too large, not JSON or not a schema, the
        feature named (:class:`~client.errors.InvalidInput`). A server older than this call
        raises :class:`~client.errors.ServerError` with code UNIMPLEMENTED."""
        path = Path(path)
        digest = digest_file(path)

        def attempt(timeout: float | None) -> str:
            messages = convert.schema_upload_requests(path.name, digest, read_chunks(path))
            return convert.upload_id(
                self._stub.UploadSchema(messages, metadata=self._metadata, timeout=timeout)
            )

        return self._call(f"uploading {path.name}", attempt, stream=True)

    # -----------------------------------------------------------------------------------------
    # Jobs

    @translated
    def submit(
        self,
        model_id: str,
        train_dataset_id: str,
        params: HardeningParams | None = None,
        *,
        eval_dataset_id: str | None = None,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        webhook_url: str = "",
        mlflow: MlflowTracking | None = None,
        tokenizer_id: str | None = None,
        feature_schema_id: str | None = None,
        **param_fields: Any,
    ) -> Job:
        """Queue a hardening job. Give the parameters as a :class:`HardeningParams`, as keyword
        arguments named like its fields (``method="pgd", eps=0.1, epochs=5``), or both (the
        keywords override). Returns the job in state QUEUED, or, when ``idempotency_key`` was
        used before with the same request, the job it created then, in whatever state it is.
        Retried on transient errors only when it carries an ``idempotency_key``. With
        ``webhook_url``, the server POSTs a signed notification there when the job ends
        (docs/webhooks.md). With ``mlflow``, the job is logged to the MLflow tracking server of
        the service's operator (docs/mlflow.md). A text model names its uploaded tokenizer in
        ``tokenizer_id`` (its threat model is ``params.text``, the engine's defaults when
        unset; ``eps`` is not used). A tabular model names its uploaded feature schema in
        ``feature_schema_id``: the schema's ranges are the input domain (``lower`` and ``upper``
        are not used) and ``eps`` is the budget, in the schema's units, of a feature whose
        entry sets none."""
        spec = JobSpec(
            model_id=model_id,
            train_dataset_id=train_dataset_id,
            eval_dataset_id=eval_dataset_id,
            params=_params(params, param_fields, text=tokenizer_id is not None),
            webhook_url=webhook_url,
            mlflow=mlflow,
            tokenizer_id=tokenizer_id,
            feature_schema_id=feature_schema_id,
        )
        request = convert.submit_request(spec, idempotency_key, labels)
        return self._call(
            "submitting the job",
            lambda timeout: convert.job(self._stub.SubmitJob(request, **self._options(timeout))),
            retry=bool(idempotency_key),
        )

    @translated
    def get(self, job_id: str) -> Job:
        request = convert.get_request(job_id)
        return self._call(
            f"getting job {job_id}",
            lambda timeout: convert.job(self._stub.GetJob(request, **self._options(timeout))),
        )

    @translated
    def list(
        self,
        state: JobState | str | Iterable[JobState | str] | None = None,
        label: Mapping[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> JobPage:
        """One page of jobs, newest first: only those in one of ``state`` and carrying every
        ``label``. ``page_size`` 0 lets the server choose; pass ``next_page_token`` on."""
        request = convert.list_request(_states(state), label, page_size, page_token)
        return self._call(
            "listing jobs",
            lambda timeout: convert.job_page(
                self._stub.ListJobs(request, **self._options(timeout))
            ),
        )

    def iter_jobs(
        self,
        state: JobState | str | Iterable[JobState | str] | None = None,
        label: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> Iterator[Job]:
        """Every matching job, newest first, fetching pages as needed."""
        token = ""
        while True:
            page = self.list(state, label, page_size, token)
            yield from page.jobs
            if not page.next_page_token:
                return
            token = page.next_page_token

    @translated
    def server_info(self) -> ServerInfo:
        """The server's release and API. A server older than this call raises
        :class:`~client.errors.ServerError` with code UNIMPLEMENTED."""
        request = hardening_pb2.GetServerInfoRequest()
        return self._call(
            "asking the server's version",
            lambda timeout: convert.server_info(
                self._stub.GetServerInfo(request, **self._options(timeout))
            ),
        )

    @translated
    def cancel(self, job_id: str) -> Job:
        """Ask the job to stop. A queued job is CANCELLED at once; a running one soon after (the
        returned job then has ``cancel_requested`` set)."""
        request = convert.cancel_request(job_id)
        return self._call(
            f"cancelling job {job_id}",
            lambda timeout: convert.job(self._stub.CancelJob(request, **self._options(timeout))),
        )

    @translated
    def delete(self, job_id: str, cancel: bool = False) -> JobDeletion:
        """Delete a finished job and its artifacts (not its uploads). A queued or running job is
        refused (FailedPrecondition) unless ``cancel``: it is then cancelled and deleted once it
        stopped. Deleting a job again answers ``already_deleted``. Takes a whole job id."""
        request = convert.delete_request(job_id, cancel)
        return self._call(
            f"deleting job {job_id}",
            lambda timeout: convert.deletion(
                self._stub.DeleteJob(request, **self._options(timeout))
            ),
        )

    def watch(self, job_id: str, timeout: float | None = None) -> Iterator[JobEvent]:
        """The job's events: its current state first, then every state change and progress
        update; the iterator ends after a terminal state. ``timeout`` (and :meth:`deadline`)
        bound the whole stream."""
        if self._deadline is not None:
            timeout = self._deadline.cap(timeout)
        stream = self._stub.WatchJob(
            convert.watch_request(job_id), metadata=self._metadata, timeout=timeout
        )
        try:
            for message in translated_stream(stream):
                yield convert.job_event(message)
        finally:
            stream.cancel()

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> Job:
        """Block until the job reaches a terminal state and return it, whatever that state is.

        Re-opens the watch stream if the server drops it. Raises :class:`WaitTimeout` after
        ``timeout`` seconds, :class:`DeadlineExceeded` when the client's :meth:`deadline` passes
        (the job goes on either way). ``on_event`` sees every event as it arrives.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        reconnects = 0
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            try:
                for event in self.watch(job_id, timeout=remaining):
                    reconnects = 0
                    if on_event is not None:
                        on_event(event)
                    if event.job is not None and event.job.state.is_terminal:
                        return event.job
            except ConnectionFailed as error:
                if self._deadline is not None and self._deadline.expired():
                    raise self._deadline_passed(f"waiting for job {job_id}") from error
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(
                        f"job {job_id} did not finish within {timeout:g} s; it goes on",
                        error.code,
                    ) from error
                if error.code is not grpc.StatusCode.UNAVAILABLE or reconnects >= WATCH_RECONNECTS:
                    raise
                reconnects += 1
                self._pause(min(2.0**reconnects, 15.0))
                continue
            job = self.get(job_id)
            if job.state.is_terminal:
                return job
            self._pause(RESUBSCRIBE_PAUSE_SECONDS)

    # -----------------------------------------------------------------------------------------
    # Downloads

    @translated
    def download(
        self, job_id: str, kind: ArtifactKind | str, dest_path: str | os.PathLike[str]
    ) -> Path:
        """Save one output of a succeeded job at ``dest_path`` and return where it is. The file
        appears only after its size and SHA-256 match what the server announced
        (:class:`IntegrityError` if not). A download the connection breaks is started again
        from its first byte.

        A hardened model whose weights were over the server's inline limit comes as a bundle
        (its ``.onnx`` and data file): it is unpacked into a folder of its own,
        ``out/hardened.onnx`` -> ``out/hardened/`` (:mod:`client.model_bundle_out`), and the
        path returned is its ``.onnx`` there."""
        request = convert.download_request(job_id, ArtifactKind(kind))

        def attempt(timeout: float | None) -> Path:
            stream = self._stub.DownloadArtifact(request, metadata=self._metadata, timeout=timeout)
            try:
                header = convert.download_header(next(stream, None))
                if header is None:
                    raise IntegrityError(
                        f"the server sent no header for the {kind} of job {job_id}"
                    )
                if not header.sha256:
                    raise IntegrityError(
                        f"the server sent no SHA-256 for the {kind} of job {job_id}"
                    )
                digest = FileDigest(header.size_bytes, header.sha256)
                if header.bundle:
                    return save_bundle(convert.download_chunks(stream), Path(dest_path), digest)
                return write_verified(convert.download_chunks(stream), Path(dest_path), digest)
            finally:
                stream.cancel()

        return self._call(f"downloading the {kind} of job {job_id}", attempt, stream=True)

    def download_card(
        self, job_id: str, dest_path: str | os.PathLike[str]
    ) -> tuple[Path, Path | None]:
        """Save the model card at ``dest_path`` and its plot beside it
        (:func:`client.layout.plot_beside`), the card's image link pointing at the plot. The
        plot is None for a job the server finished before it kept plots."""
        return self._download_card(self.get(job_id), Path(dest_path))

    def _download_card(self, job: Job, card_path: Path) -> tuple[Path, Path | None]:
        card = self.download(job.id, ArtifactKind.CARD, card_path)
        if not any(output.kind is ArtifactKind.PLOT for output in job.outputs):
            return card, None
        plot = self.download(job.id, ArtifactKind.PLOT, plot_beside(card))
        card.write_text(relink_plot(card.read_text(), plot))
        return card, plot

    # -----------------------------------------------------------------------------------------
    # All of it

    def harden(
        self,
        model_path: str | os.PathLike[str],
        data_path: str | os.PathLike[str],
        params: HardeningParams | None = None,
        *,
        output: str | os.PathLike[str],
        eval_data_path: str | os.PathLike[str] | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
        schema_path: str | os.PathLike[str] | None = None,
        model_format: ModelFormat | str | None = None,
        labels: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        webhook_url: str = "",
        mlflow: MlflowTracking | None = None,
        on_event: EventCallback | None = None,
        timeout: float | None = None,
        resubmit_if_failed: bool = False,
        **param_fields: Any,
    ) -> HardeningOutcome:
        """Upload, submit, wait, download: the hardened ONNX model at ``output``, its report,
        model card and plot beside it (see :class:`client.layout.OutputLayout`). ``timeout``
        bounds the wait for the job; :meth:`deadline` bounds all of it.

        With ``resubmit_if_failed``, an ``idempotency_key`` that names a job that already failed
        or was cancelled (an earlier run of the same step) leads to a new job under a key
        derived from that job's id (:func:`client.idempotency.next_idempotency_key`): running a
        step again retries what failed, and reuses what is queued, running or succeeded.

        A text model comes with ``tokenizer_path`` (its ``tokenizer.json``) and labelled texts
        as ``data_path`` (JSON Lines or CSV); its tokenizer comes back beside ``output``
        (``hardened.tokenizer.json``). A tabular model comes with ``schema_path``, its feature
        schema (docs/tabular.md), and ``eps`` in the schema's units.

        Raises :class:`JobFailed` if the job fails or is cancelled.
        """
        model_id = self.upload_model(model_path, format=model_format)
        tokenizer_id = self.upload_tokenizer(tokenizer_path) if tokenizer_path else None
        schema_id = self.upload_schema(schema_path) if schema_path else None
        train_id = self.upload_dataset(data_path)
        eval_id = self.upload_dataset(eval_data_path) if eval_data_path is not None else None
        submit = functools.partial(
            self.submit,
            model_id,
            train_id,
            params,
            eval_dataset_id=eval_id,
            labels=labels,
            webhook_url=webhook_url,
            mlflow=mlflow,
            tokenizer_id=tokenizer_id,
            feature_schema_id=schema_id,
            **param_fields,
        )
        job = submit(idempotency_key=idempotency_key)
        for _ in range(MAX_RESUBMISSIONS if resubmit_if_failed and idempotency_key else 0):
            if job.state not in (JobState.FAILED, JobState.CANCELLED):
                break
            assert idempotency_key is not None
            idempotency_key = next_idempotency_key(idempotency_key, job.id)
            job = submit(idempotency_key=idempotency_key)
        if on_event is not None:
            on_event(JobEvent(job_id=job.id, state=job.state, job=job))
        final = self.wait(job.id, timeout=timeout, on_event=on_event)
        if final.state is not JobState.SUCCEEDED:
            raise JobFailed(
                f"job {final.id} {final.state.value.lower()}: {final.reason or 'no reason given'}",
                final,
                cancelled=final.state is JobState.CANCELLED,
            )
        layout = OutputLayout.beside(Path(output))
        model_path = self.download(final.id, ArtifactKind.MODEL, layout.model)
        self.download(final.id, ArtifactKind.REPORT, layout.report)
        _, plot_path = self._download_card(final, layout.card)
        tokenizer = None
        if any(output.kind is ArtifactKind.TOKENIZER for output in final.outputs):
            tokenizer = self.download(final.id, ArtifactKind.TOKENIZER, layout.tokenizer)
        schema = None
        if any(output.kind is ArtifactKind.SCHEMA for output in final.outputs):
            schema = self.download(final.id, ArtifactKind.SCHEMA, layout.schema)
        return HardeningOutcome(
            model_path=model_path,
            report_path=layout.report,
            card_path=layout.card,
            plot_path=plot_path,
            report=json.loads(layout.report.read_text()),
            job=final,
            tokenizer_path=tokenizer,
            schema_path=schema,
        )

    def _options(self, timeout: float | None) -> dict[str, Any]:
        return {"metadata": self._metadata, "timeout": timeout}

    def _call(
        self,
        what: str,
        operation: Callable[[float | None], T],
        *,
        retry: bool = True,
        stream: bool = False,
    ) -> T:
        """Run one call (``operation(timeout)``) with the client's retry policy and deadlines:
        ``self.timeout`` per attempt of a short call, the :meth:`deadline` over everything."""
        if self._deadline is not None and self._deadline.expired():
            raise self._deadline_passed(what)
        try:
            return call_with_retry(
                operation,
                what=what,
                policy=self.retry if retry else NO_RETRY,
                call_timeout=None if stream else self.timeout,
                deadline=self._deadline,
            )
        except OutOfTime as out_of_time:
            raise self._deadline_passed(what, out_of_time.error) from out_of_time.error
        except grpc.RpcError as error:
            if self._deadline is not None and self._deadline.expired():
                raise self._deadline_passed(what, error) from error
            raise from_rpc_error(error) from error

    def _deadline_passed(
        self, what: str, last_error: grpc.RpcError | None = None
    ) -> DeadlineExceeded:
        seconds = self._deadline.seconds if self._deadline is not None else 0.0
        message = f"the deadline of {seconds:g} s passed while {what}"
        code = status_code(last_error) if last_error is not None else None
        if last_error is not None and code not in (None, grpc.StatusCode.DEADLINE_EXCEEDED):
            message += f" (last attempt: {code.name}: {from_rpc_error(last_error)})"
        return DeadlineExceeded(message, grpc.StatusCode.DEADLINE_EXCEEDED)

    def _pause(self, seconds: float) -> None:
        """Sleep, but not past the deadline (the next call then reports it)."""
        if self._deadline is not None:
            seconds = min(seconds, self._deadline.remaining())
        time.sleep(seconds)


def _open_channel(
    target: str, tls: bool | TlsConfig | grpc.ChannelCredentials | None
) -> grpc.Channel:
    if tls is None or tls is False:
        return grpc.insecure_channel(target)
    if tls is True:
        credentials = grpc.ssl_channel_credentials()
    elif isinstance(tls, TlsConfig):
        credentials = tls.credentials()
    else:
        credentials = tls
    return grpc.secure_channel(target, credentials)


def _params(
    params: HardeningParams | None, fields: Mapping[str, Any], *, text: bool = False
) -> HardeningParams:
    """A text job (``text``) needs no ``eps``; its threat model defaults to the engine's."""
    unknown = set(fields) - HardeningParams.field_names()
    if unknown:
        raise TypeError(f"unknown hardening parameters: {sorted(unknown)}")
    if params is None:
        missing = ({"method"} if text else {"method", "eps"}) - set(fields)
        if missing:
            raise TypeError(f"missing hardening parameters: {sorted(missing)}")
        params = HardeningParams(**({"eps": 0.0} if text else {}) | dict(fields))
    else:
        params = dataclasses.replace(params, **fields)
    if text and params.text is None:
        params = dataclasses.replace(params, text=TextThreat())
    return params


def _states(state: JobState | str | Iterable[JobState | str] | None) -> tuple[JobState, ...]:
    if state is None:
        return ()
    if isinstance(state, str):
        return (JobState(state.upper()),)
    return tuple(JobState(s.upper()) for s in state)
