"""gRPC servicer: converts messages and calls the application layer, nothing more."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service import convert
from service.jobs import Jobs
from service.uploads import Uploads


class HardeningServicer(pb_grpc.HardeningServiceServicer):
    def __init__(self, uploads: Uploads, jobs: Jobs) -> None:
        self._uploads = uploads
        self._jobs = jobs

    def UploadModel(
        self, request_iterator: Iterator[pb.UploadModelRequest], context: grpc.ServicerContext
    ) -> pb.UploadResponse:
        header, chunks = convert.model_upload(request_iterator)
        return convert.upload_response(self._uploads.receive(header, chunks))

    def UploadDataset(
        self, request_iterator: Iterator[pb.UploadDatasetRequest], context: grpc.ServicerContext
    ) -> pb.UploadResponse:
        header, chunks = convert.dataset_upload(request_iterator)
        return convert.upload_response(self._uploads.receive(header, chunks))

    def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return convert.job_to_pb(self._jobs.submit(convert.new_job(request)))

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return convert.job_to_pb(self._jobs.get(convert.required(request.job_id, "job_id")))

    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        return convert.list_response(self._jobs.list_jobs(convert.job_query(request)))

    def CancelJob(self, request: pb.CancelJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return convert.job_to_pb(self._jobs.cancel(convert.required(request.job_id, "job_id")))

    def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.JobEvent]:
        job_id = convert.required(request.job_id, "job_id")
        for event in self._jobs.watch(job_id, is_active=context.is_active):
            yield convert.job_event_to_pb(event)

    def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadArtifactResponse]:
        download = self._jobs.download(
            convert.required(request.job_id, "job_id"), convert.output_kind(request.kind)
        )
        yield from convert.download_messages(download)
