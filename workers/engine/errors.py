"""Domain errors of the engine.

Each error carries a message a user can act on. The gRPC interceptor maps these classes to
status codes in one place; nothing else in the service decides codes.
"""


class TemperingError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidModel(TemperingError):
    """The uploaded model cannot be read or does not look like a classifier we can harden."""


class UnsupportedModel(InvalidModel):
    """The model is well formed but uses something the engine does not support (an operator,
    an operator domain, a layout)."""


class UntrustedFormat(TemperingError):
    """A program format (TorchScript, torch.export) uploaded while trusted formats are off."""


class InvalidData(TemperingError):
    """The dataset is malformed or does not fit the model."""


class InvalidParameter(TemperingError):
    """A hardening or evaluation parameter is out of range."""


class ExportCheckFailed(TemperingError):
    """The exported ONNX artifact disagrees with the PyTorch model under onnxruntime."""


class TrainingDiverged(TemperingError):
    """The loss became NaN or infinite; retrying the same job would fail the same way."""


class Cancelled(TemperingError):
    """The job was asked to stop and stopped."""


class TimeLimitExceeded(Cancelled):
    """The job ran over its time budget and stopped."""
