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


def float_input_required(input_name: str, type_name: str) -> str:
    """Why a model whose input is not float is refused, and how to fix it: one text for the
    engine's loader and the server's submit-time check."""
    return (
        f"input '{input_name}' is of type {type_name}; a float tensor input is required (the"
        " attacks and the training take gradients with respect to it), or, for a text"
        " classifier, int64 token ids that feed an embedding lookup (a Gather on the embedding"
        " table, as nn.Embedding exports). Export the model with a float32 input and do any"
        " conversion or scaling inside the model: for 8-bit images, take float32 pixels in"
        " [0, 1] (what uint8 data is scaled to) and, if the model expects 0-255, multiply by 255"
        " as its first operation"
    )


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
