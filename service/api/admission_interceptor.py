"""Admitting the service's unary calls (:mod:`service.core.admission`) before their handler runs.

Only calls that answer once and read one request are admitted: GetJob, ListJobs, SubmitJob,
CancelJob, DeleteJob, GetServerInfo. Streams are bounded by their own slots
(:mod:`service.api.watch_limit`, :mod:`service.api.upload_limit`) and spend their lives waiting
for the network or the job store, lock released. Health checks and reflection pass untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from service.api.handlers import WrappingInterceptor, rebuild_handler
from service.core.admission import Admission
from service.core.tenancy import current_tenant

SERVICE_PREFIX = "/tempering.v1.HardeningService/"
LONGEST_WAIT = 30.0
"""Longest a call waits for a slot when its caller set no deadline."""


class AdmissionInterceptor(WrappingInterceptor):
    by_method_only = True

    def __init__(self, admission: Admission) -> None:
        super().__init__()
        self.admission = admission

    def wrap(
        self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        if not call.method.startswith(SERVICE_PREFIX) or not handler.unary_unary:
            return handler
        return rebuild_handler(handler, unary=self._admitted)

    def _admitted(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def admitted(request: Any, context: grpc.ServicerContext) -> Any:
            with self.admission.admitted(current_tenant(), _wait_limit(context)):
                return behavior(request, context)

        return admitted


def _wait_limit(context: grpc.ServicerContext) -> float:
    remaining = context.time_remaining()
    if remaining is None:
        return LONGEST_WAIT
    return max(0.0, min(LONGEST_WAIT, remaining))
