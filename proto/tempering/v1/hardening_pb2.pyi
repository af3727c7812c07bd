import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_FORMAT_UNSPECIFIED: _ClassVar[ModelFormat]
    MODEL_FORMAT_ONNX: _ClassVar[ModelFormat]
    MODEL_FORMAT_SAFETENSORS: _ClassVar[ModelFormat]
    MODEL_FORMAT_TORCHSCRIPT: _ClassVar[ModelFormat]
    MODEL_FORMAT_TORCH_EXPORT: _ClassVar[ModelFormat]
    MODEL_FORMAT_ONNX_BUNDLE: _ClassVar[ModelFormat]

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_NPZ: _ClassVar[DatasetFormat]
    DATASET_FORMAT_JSONL: _ClassVar[DatasetFormat]
    DATASET_FORMAT_CSV: _ClassVar[DatasetFormat]

class Norm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NORM_UNSPECIFIED: _ClassVar[Norm]
    NORM_LINF: _ClassVar[Norm]
    NORM_L2: _ClassVar[Norm]

class EvaluationSuite(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVALUATION_SUITE_UNSPECIFIED: _ClassVar[EvaluationSuite]
    EVALUATION_SUITE_STANDARD: _ClassVar[EvaluationSuite]
    EVALUATION_SUITE_FAST: _ClassVar[EvaluationSuite]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class ArtifactKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARTIFACT_KIND_UNSPECIFIED: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_HARDENED_MODEL: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_REPORT: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_MODEL_CARD: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_ROBUSTNESS_PLOT: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_TOKENIZER: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_FEATURE_SCHEMA: _ClassVar[ArtifactKind]
MODEL_FORMAT_UNSPECIFIED: ModelFormat
MODEL_FORMAT_ONNX: ModelFormat
MODEL_FORMAT_SAFETENSORS: ModelFormat
MODEL_FORMAT_TORCHSCRIPT: ModelFormat
MODEL_FORMAT_TORCH_EXPORT: ModelFormat
MODEL_FORMAT_ONNX_BUNDLE: ModelFormat
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_NPZ: DatasetFormat
DATASET_FORMAT_JSONL: DatasetFormat
DATASET_FORMAT_CSV: DatasetFormat
NORM_UNSPECIFIED: Norm
NORM_LINF: Norm
NORM_L2: Norm
EVALUATION_SUITE_UNSPECIFIED: EvaluationSuite
EVALUATION_SUITE_STANDARD: EvaluationSuite
EVALUATION_SUITE_FAST: EvaluationSuite
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
ARTIFACT_KIND_UNSPECIFIED: ArtifactKind
ARTIFACT_KIND_HARDENED_MODEL: ArtifactKind
ARTIFACT_KIND_REPORT: ArtifactKind
ARTIFACT_KIND_MODEL_CARD: ArtifactKind
ARTIFACT_KIND_ROBUSTNESS_PLOT: ArtifactKind
ARTIFACT_KIND_TOKENIZER: ArtifactKind
ARTIFACT_KIND_FEATURE_SCHEMA: ArtifactKind

class ModelUploadHeader(_message.Message):
    __slots__ = ("name", "format", "size_bytes", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: ModelFormat
    size_bytes: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., format: _Optional[_Union[ModelFormat, str]] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadModelRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ModelUploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[ModelUploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class DatasetUploadHeader(_message.Message):
    __slots__ = ("name", "format", "size_bytes", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: DatasetFormat
    size_bytes: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., format: _Optional[_Union[DatasetFormat, str]] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadDatasetRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: DatasetUploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[DatasetUploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class TokenizerUploadHeader(_message.Message):
    __slots__ = ("name", "size_bytes", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadTokenizerRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: TokenizerUploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[TokenizerUploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class SchemaUploadHeader(_message.Message):
    __slots__ = ("name", "size_bytes", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadSchemaRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SchemaUploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[SchemaUploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("artifact_id", "sha256", "size_bytes", "already_present")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    sha256: str
    size_bytes: int
    already_present: bool
    def __init__(self, artifact_id: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., already_present: _Optional[bool] = ...) -> None: ...

class ThreatModel(_message.Message):
    __slots__ = ("norm", "epsilon", "lower", "upper")
    NORM_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    norm: Norm
    epsilon: float
    lower: _containers.RepeatedScalarFieldContainer[float]
    upper: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, norm: _Optional[_Union[Norm, str]] = ..., epsilon: _Optional[float] = ..., lower: _Optional[_Iterable[float]] = ..., upper: _Optional[_Iterable[float]] = ...) -> None: ...

class TextThreatModel(_message.Message):
    __slots__ = ("word_share", "char_share", "embedding_eps", "max_length")
    WORD_SHARE_FIELD_NUMBER: _ClassVar[int]
    CHAR_SHARE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_EPS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    word_share: float
    char_share: float
    embedding_eps: float
    max_length: int
    def __init__(self, word_share: _Optional[float] = ..., char_share: _Optional[float] = ..., embedding_eps: _Optional[float] = ..., max_length: _Optional[int] = ...) -> None: ...

class Distillation(_message.Message):
    __slots__ = ("temperature", "hard_label_weight", "teacher_epochs")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    HARD_LABEL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TEACHER_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    hard_label_weight: float
    teacher_epochs: int
    def __init__(self, temperature: _Optional[float] = ..., hard_label_weight: _Optional[float] = ..., teacher_epochs: _Optional[int] = ...) -> None: ...

class Pgd(_message.Message):
    __slots__ = ("attack_steps", "step_size", "eps_warmup_epochs")
    ATTACK_STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    EPS_WARMUP_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    attack_steps: int
    step_size: float
    eps_warmup_epochs: float
    def __init__(self, attack_steps: _Optional[int] = ..., step_size: _Optional[float] = ..., eps_warmup_epochs: _Optional[float] = ...) -> None: ...

class Fgsm(_message.Message):
    __slots__ = ("step_size", "eps_warmup_epochs")
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    EPS_WARMUP_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    step_size: float
    eps_warmup_epochs: float
    def __init__(self, step_size: _Optional[float] = ..., eps_warmup_epochs: _Optional[float] = ...) -> None: ...

class Trades(_message.Message):
    __slots__ = ("attack_steps", "step_size", "eps_warmup_epochs", "beta")
    ATTACK_STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    EPS_WARMUP_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    attack_steps: int
    step_size: float
    eps_warmup_epochs: float
    beta: float
    def __init__(self, attack_steps: _Optional[int] = ..., step_size: _Optional[float] = ..., eps_warmup_epochs: _Optional[float] = ..., beta: _Optional[float] = ...) -> None: ...

class Training(_message.Message):
    __slots__ = ("epochs", "batch_size", "learning_rate", "from_scratch", "select_best_robust", "validation_size", "distillation", "pgd", "fgsm", "trades")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    FROM_SCRATCH_FIELD_NUMBER: _ClassVar[int]
    SELECT_BEST_ROBUST_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISTILLATION_FIELD_NUMBER: _ClassVar[int]
    PGD_FIELD_NUMBER: _ClassVar[int]
    FGSM_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    batch_size: int
    learning_rate: float
    from_scratch: bool
    select_best_robust: bool
    validation_size: int
    distillation: Distillation
    pgd: Pgd
    fgsm: Fgsm
    trades: Trades
    def __init__(self, epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., from_scratch: _Optional[bool] = ..., select_best_robust: _Optional[bool] = ..., validation_size: _Optional[int] = ..., distillation: _Optional[_Union[Distillation, _Mapping]] = ..., pgd: _Optional[_Union[Pgd, _Mapping]] = ..., fgsm: _Optional[_Union[Fgsm, _Mapping]] = ..., trades: _Optional[_Union[Trades, _Mapping]] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("suite", "samples")
    SUITE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    suite: EvaluationSuite
    samples: int
    def __init__(self, suite: _Optional[_Union[EvaluationSuite, str]] = ..., samples: _Optional[int] = ...) -> None: ...

class MlflowTracking(_message.Message):
    __slots__ = ("experiment", "run_name")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    run_name: str
    def __init__(self, experiment: _Optional[str] = ..., run_name: _Optional[str] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("model_id", "train_dataset_id", "eval_dataset_id", "training", "threat_model", "evaluation", "seed", "time_limit_seconds", "architecture", "num_classes", "webhook_url", "mlflow", "text_threat_model", "tokenizer_id", "feature_schema_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TRAIN_DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    EVAL_DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    THREAT_MODEL_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_FIELD_NUMBER: _ClassVar[int]
    TEXT_THREAT_MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    train_dataset_id: str
    eval_dataset_id: str
    training: Training
    threat_model: ThreatModel
    evaluation: Evaluation
    seed: int
    time_limit_seconds: float
    architecture: str
    num_classes: int
    webhook_url: str
    mlflow: MlflowTracking
    text_threat_model: TextThreatModel
    tokenizer_id: str
    feature_schema_id: str
    def __init__(self, model_id: _Optional[str] = ..., train_dataset_id: _Optional[str] = ..., eval_dataset_id: _Optional[str] = ..., training: _Optional[_Union[Training, _Mapping]] = ..., threat_model: _Optional[_Union[ThreatModel, _Mapping]] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., seed: _Optional[int] = ..., time_limit_seconds: _Optional[float] = ..., architecture: _Optional[str] = ..., num_classes: _Optional[int] = ..., webhook_url: _Optional[str] = ..., mlflow: _Optional[_Union[MlflowTracking, _Mapping]] = ..., text_threat_model: _Optional[_Union[TextThreatModel, _Mapping]] = ..., tokenizer_id: _Optional[str] = ..., feature_schema_id: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "epoch", "epochs", "step", "steps", "loss", "clean_accuracy", "robust_accuracy", "eta_seconds", "message", "update_time")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ROBUST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    stage: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    clean_accuracy: float
    robust_accuracy: float
    eta_seconds: float
    message: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, stage: _Optional[str] = ..., epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., step: _Optional[int] = ..., steps: _Optional[int] = ..., loss: _Optional[float] = ..., clean_accuracy: _Optional[float] = ..., robust_accuracy: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., message: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OutputArtifact(_message.Message):
    __slots__ = ("kind", "filename", "size_bytes", "sha256", "media_type", "bundle")
    KIND_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    kind: ArtifactKind
    filename: str
    size_bytes: int
    sha256: str
    media_type: str
    bundle: bool
    def __init__(self, kind: _Optional[_Union[ArtifactKind, str]] = ..., filename: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., media_type: _Optional[str] = ..., bundle: _Optional[bool] = ...) -> None: ...

class Accuracy(_message.Message):
    __slots__ = ("value", "low", "high")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    value: float
    low: float
    high: float
    def __init__(self, value: _Optional[float] = ..., low: _Optional[float] = ..., high: _Optional[float] = ...) -> None: ...

class Scores(_message.Message):
    __slots__ = ("clean_accuracy", "robust_accuracy")
    CLEAN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ROBUST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    clean_accuracy: Accuracy
    robust_accuracy: Accuracy
    def __init__(self, clean_accuracy: _Optional[_Union[Accuracy, _Mapping]] = ..., robust_accuracy: _Optional[_Union[Accuracy, _Mapping]] = ...) -> None: ...

class ResultSummary(_message.Message):
    __slots__ = ("original", "hardened")
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    HARDENED_FIELD_NUMBER: _ClassVar[int]
    original: Scores
    hardened: Scores
    def __init__(self, original: _Optional[_Union[Scores, _Mapping]] = ..., hardened: _Optional[_Union[Scores, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "spec", "labels", "idempotency_key", "create_time", "start_time", "end_time", "update_time", "progress", "reason", "cancel_requested", "attempts", "outputs", "result")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: JobState
    spec: JobSpec
    labels: _containers.ScalarMap[str, str]
    idempotency_key: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    progress: Progress
    reason: str
    cancel_requested: bool
    attempts: int
    outputs: _containers.RepeatedCompositeFieldContainer[OutputArtifact]
    result: ResultSummary
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., reason: _Optional[str] = ..., cancel_requested: _Optional[bool] = ..., attempts: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[OutputArtifact, _Mapping]]] = ..., result: _Optional[_Union[ResultSummary, _Mapping]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("spec", "idempotency_key", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    idempotency_key: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "states", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[JobState]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id", "cancel")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    cancel: bool
    def __init__(self, job_id: _Optional[str] = ..., cancel: _Optional[bool] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ("job_id", "already_deleted", "artifacts_removed", "bytes_removed")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ALREADY_DELETED_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    already_deleted: bool
    artifacts_removed: int
    bytes_removed: int
    def __init__(self, job_id: _Optional[str] = ..., already_deleted: _Optional[bool] = ..., artifacts_removed: _Optional[int] = ..., bytes_removed: _Optional[int] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "time", "state", "state_changed", "progress")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    time: _timestamp_pb2.Timestamp
    state: JobState
    state_changed: Job
    progress: Progress
    def __init__(self, job_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., state_changed: _Optional[_Union[Job, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("job_id", "kind")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: ArtifactKind
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[_Union[ArtifactKind, str]] = ...) -> None: ...

class DownloadArtifactResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: OutputArtifact
    chunk: bytes
    def __init__(self, header: _Optional[_Union[OutputArtifact, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "api")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_FIELD_NUMBER: _ClassVar[int]
    version: str
    api: str
    def __init__(self, version: _Optional[str] = ..., api: _Optional[str] = ...) -> None: ...
