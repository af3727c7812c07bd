"""gRPC servicer: converts messages and calls the application layer, nothing more.

The caller's tenant comes from the authentication interceptor (:func:`current_tenant`) and is
handed to every use case explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api import convert
from service.core.release import package_version
from service.core.tenancy import current_tenant
from service.jobs.jobs import Jobs
from service.jobs.uploads import Uploads


class HardeningServicer(pb_grpc.HardeningServiceServicer):
    def __init__(self, uploads: Uploads, jobs: Jobs) -> None:
        self._uploads = uploads
        self._jobs = jobs

    def UploadModel(
        self, request_iterator: Iterator[pb.UploadModelRequest], context: grpc.ServicerContext
    ) -> pb.UploadResponse:
        header, chunks = convert.model_upload(request_iterator)
        return convert.upload_response(
            self._uploads.receive(header, chunks, tenant=current_tenant())
        )

    def UploadDataset(
        self, request_iterator: Iterator[pb.UploadDatasetRequest], context: grpc.ServicerContext
    ) -> pb.UploadResponse:
        header, chunks = convert.dataset_upload(request_iterator)
        return convert.upload_response(
            self._uploads.receive(header, chunks, tenant=current_tenant())
        )

    def UploadTokenizer(
        self, request_iterator: Iterator[pb.UploadTokenizerRequest], context: grpc.ServicerContext
    ) -> pb.UploadResponse:
        header, chunks = convert.tokenizer_upload(request_iterator)
        return convert.upload_response(
            self._uploads.receive(header, chunks, tenant=current_tenant())
        )

    def UploadSchema(
        self, request_iterator: Iterator[pb.UploadSchemaRequest], context: grpc.ServicerContext
    ) -> pb.UploadResponse:
        header, chunks = convert.schema_upload(request_iterator)
        return convert.upload_response(
            self._uploads.receive(header, chunks, tenant=current_tenant())
        )

    def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.ServicerContext) -> pb.Job:
        new = convert.new_job(request)
        return convert.job_to_pb(self._jobs.submit(new, tenant=current_tenant()))

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.Job:
        job_id = convert.job_id(request)
        return convert.job_to_pb(self._jobs.get(job_id, tenant=current_tenant()))

    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        query = convert.job_query(request)
        return convert.list_response(self._jobs.list_jobs(query, tenant=current_tenant()))

    def CancelJob(self, request: pb.CancelJobRequest, context: grpc.ServicerContext) -> pb.Job:
        job_id = convert.job_id(request)
        return convert.job_to_pb(self._jobs.cancel(job_id, tenant=current_tenant()))

    def DeleteJob(
        self, request: pb.DeleteJobRequest, context: grpc.ServicerContext
    ) -> pb.DeleteJobResponse:
        job_id = convert.job_id(request)
        deletion = self._jobs.delete(job_id, tenant=current_tenant(), cancel=request.cancel)
        return convert.deletion_to_pb(deletion)

    def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.JobEvent]:
        job_id = convert.job_id(request)
        events = self._jobs.watch(job_id, context.is_active, tenant=current_tenant())
        for event in events:
            yield convert.job_event_to_pb(event)

    def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadArtifactResponse]:
        job_id, kind = convert.download_request(request)
        download = self._jobs.download(job_id, kind, tenant=current_tenant())
        yield from convert.download_messages(download)

    def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> pb.ServerInfo:
        return pb.ServerInfo(version=package_version(), api=pb.DESCRIPTOR.package)
