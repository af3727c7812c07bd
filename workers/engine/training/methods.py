"""The four hardening methods, each a short composition of steps, the loop and a validation.

Adversarial methods keep the epoch with the best robust accuracy on held-out data (robust
overfitting, Rice et al. 2020). FGSM training additionally watches for catastrophic overfitting
(Wong et al. 2020: robust accuracy under PGD collapsing within an epoch) and recovers by rolling
back to the best epoch and shrinking the step.

Every run is watched: when an epoch leaves the model with less than half of the upload's
validation accuracy above chance, or the loss stops being finite, the run starts again from the
upload with a tenth of the learning rate, then from fresh weights, and the notes say so.

Given a :class:`~workers.engine.checkpoint.Checkpointer`, training saves its whole state at
every epoch boundary and, when the checkpointer already holds a state of the same run, goes on
from there instead of starting over (distillation saves its finished teacher too).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.engine.attacks.region import FeatureRegion
from workers.engine.checkpoint import Checkpointer, State, capture_rng, restore_rng
from workers.engine.device import Device
from workers.engine.errors import TrainingDiverged
from workers.engine.geometry import Box
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import Method, ThreatModel, TrainingConfig
from workers.engine.training.logit_scale import scale_logits
from workers.engine.training.loop import Batches, Step, train_epoch
from workers.engine.training.recipe import FGSM_STEP_SHARE, PEAK_LR
from workers.engine.training.schedules import WARMUP_FRACTION, eps_warmup, one_cycle
from workers.engine.training.steps import (
    AdversarialSetting,
    DistillationStep,
    FgsmStep,
    PgdStep,
    TemperatureStep,
    TradesStep,
)

VALIDATION_PGD_STEPS = 10
COLLAPSE_DROP = 0.2
"""An absolute fall in validation robust accuracy treated as catastrophic overfitting."""


class Selection(StrEnum):
    """Which epoch a phase keeps. Ties go to the later epoch, trained at a lower rate."""

    ROBUST = "best validation robust accuracy"
    CLEAN = "best validation clean accuracy"
    LAST = "last epoch"


@dataclass(frozen=True)
class EpochRecord:
    stage: str
    epoch: int
    loss: float
    train_accuracy: float
    val_clean_accuracy: float
    val_robust_accuracy: float | None


@dataclass
class TrainingOutcome:
    model: nn.Module
    history: list[EpochRecord]
    selected_epoch: int
    selection: str
    config: TrainingConfig
    """The configuration that produced the model (gentler than asked after a restart)."""
    notes: list[str] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    """Epochs (over all stages) already done when this run went on from a checkpoint."""


@dataclass(frozen=True)
class TrainingData:
    x: Tensor
    y: Tensor
    val_x: Tensor
    val_y: Tensor


def train(
    model: nn.Module,
    data: TrainingData,
    *,
    threat: ThreatModel,
    box: Box,
    config: TrainingConfig,
    device: Device,
    reporter: Reporter,
    generator: torch.Generator,
    checkpointer: Checkpointer | None = None,
    early_stopping_patience: int | None = None,
    region: FeatureRegion | None = None,
) -> TrainingOutcome:
    """Harden a copy of ``model`` with ``config.method``; the argument is left untouched.
    With a ``region`` (a tabular model's feature schema) the attacks of training and of the
    checkpoint selection stay inside it instead of the norm ball.

    ``config`` must be concrete (see :func:`workers.engine.training.recipe.resolve`). With a
    ``checkpointer``, the state is saved after every epoch, and a saved state of the same run
    (same model shapes, data sizes and configuration) is resumed. A run that collapses or
    diverges is started again with a gentler configuration, at most :data:`MAX_RESTARTS` times
    (see :func:`_gentler`)."""
    guard = CollapseGuard.for_upload(model, data, device, fine_tuning=not config.from_scratch)
    recoveries: list[str] = []
    attempt = config
    while True:
        try:
            outcome = _train_once(
                model,
                data,
                threat=threat,
                box=box,
                config=attempt,
                device=device,
                reporter=reporter,
                generator=generator,
                checkpointer=checkpointer,
                early_stopping_patience=early_stopping_patience,
                guard=guard if len(recoveries) < MAX_RESTARTS else CollapseGuard(None),
                region=region,
            )
        except (Collapsed, TrainingDiverged) as failure:
            if len(recoveries) >= MAX_RESTARTS:
                raise TrainingDiverged(
                    f"{failure} Training was restarted {MAX_RESTARTS} times with gentler"
                    " settings and diverged each time; check the data's labels and bounds"
                ) from failure
            attempt, remedy = _gentler(attempt, len(recoveries))
            recoveries.append(f"{failure} {remedy}")
            reporter.emit(ProgressEvent(stage="training", message=f"restarting: {remedy}"))
            continue
        if recoveries and guard.floor is not None and len(recoveries) == MAX_RESTARTS:
            recoveries.append(
                "The last restart ran to its end without the collapse check; if clean accuracy"
                " is still far below the upload's, epsilon may be too large for this data."
            )
        outcome.notes[:0] = recoveries
        return outcome


MAX_RESTARTS = 2
T = TypeVar("T")


class Collapsed(Exception):
    """An epoch ended with the model's clean accuracy collapsed (see :class:`CollapseGuard`)."""


@dataclass(frozen=True)
class CollapseGuard:
    """Tells a run that has destroyed what the upload knew. Fine-tuning a classifier that is
    well above chance must not end an epoch with less than half of that margin left."""

    floor: float | None

    @classmethod
    def for_upload(
        cls, model: nn.Module, data: TrainingData, device: Device, *, fine_tuning: bool
    ) -> CollapseGuard:
        if not fine_tuning or len(data.val_y) == 0:
            return cls(None)
        chance = 1.0 / (int(torch.cat([data.y, data.val_y]).max()) + 1)
        was_training = model.training
        start, _ = validate(
            model.to(device.torch_device), data.val_x, data.val_y, 0.0, None, robust=False
        )
        model.train(was_training)
        if start < chance + 0.2:
            return cls(None)
        return cls(chance + 0.5 * (start - chance))

    def check(self, clean: float, epoch: int) -> None:
        if self.floor is not None and clean < self.floor:
            raise Collapsed(
                f"validation clean accuracy collapsed to {clean:.1%} in epoch {epoch}"
                f" (the upload's margin over chance halves at {self.floor:.1%})."
            )


def _gentler(config: TrainingConfig, restarts: int) -> tuple[TrainingConfig, str]:
    """The configuration of restart number ``restarts + 1``: a run fine-tuning the upload goes
    back to it at a tenth of the rate; after that, or for a run from scratch, fresh weights at
    the lower of the failed rate and the recipe's peak rate (a tenth of it from scratch)."""
    if restarts == 0 and not config.from_scratch:
        lower = _concrete(config.learning_rate) / 10
        return (
            dataclasses.replace(config, learning_rate=lower),
            f"Restarted from the upload at a tenth of the learning rate ({lower:.3g}).",
        )
    rate = min(_concrete(config.learning_rate), PEAK_LR)
    if config.from_scratch:
        rate /= 10
    return (
        dataclasses.replace(config, from_scratch=True, learning_rate=rate),
        f"Restarted from freshly initialised weights at learning rate {rate:.3g}.",
    )


def _train_once(
    model: nn.Module,
    data: TrainingData,
    *,
    threat: ThreatModel,
    box: Box,
    config: TrainingConfig,
    device: Device,
    reporter: Reporter,
    generator: torch.Generator,
    checkpointer: Checkpointer | None,
    early_stopping_patience: int | None,
    guard: CollapseGuard,
    region: FeatureRegion | None = None,
) -> TrainingOutcome:
    student = copy.deepcopy(model).to(device.torch_device)
    notes: list[str] = []
    if config.from_scratch:
        notes.append(reinitialize(student, generator))
        guard = CollapseGuard(None)
    setting = AdversarialSetting(
        threat.norm.value,
        box.to(device.torch_device),
        generator,
        device.training_autocast(),
        region=region,
    )
    resume = Resume.load(checkpointer, _fingerprint(student, data, config), generator)
    if config.method is Method.DISTILLATION:
        outcome = _distill(
            student, data, threat, config, device, reporter, generator, setting, notes, resume
        )
        return resume.annotate(outcome)
    step: Step
    if config.method is Method.PGD:
        step = PgdStep(setting, _concrete(config.attack_steps), config.step_size)
    elif config.method is Method.FGSM:
        share = FGSM_STEP_SHARE if config.step_size is None else config.step_size / threat.eps
        step = FgsmStep(setting, share)
    else:
        step = TradesStep(
            setting, _concrete(config.attack_steps), config.trades_beta, config.step_size
        )
    outcome = _fit(
        student,
        step,
        data,
        threat=threat,
        config=config,
        device=device,
        reporter=reporter,
        generator=generator,
        setting=setting,
        notes=notes,
        peak_lr=_concrete(config.learning_rate),
        stage="training",
        epochs=_concrete(config.epochs),
        selection=Selection.ROBUST if config.select_best_robust else Selection.LAST,
        checkpoint=resume.phase("training"),
        patience=early_stopping_patience,
        guard=guard,
    )
    return resume.annotate(outcome)


def _concrete(value: T | None) -> T:
    if value is None:
        raise ValueError("training needs a resolved configuration (see training.recipe)")
    return value


def _fit(
    model: nn.Module,
    step: Step,
    data: TrainingData,
    *,
    threat: ThreatModel,
    config: TrainingConfig,
    device: Device,
    reporter: Reporter,
    generator: torch.Generator,
    setting: AdversarialSetting,
    notes: list[str],
    peak_lr: float,
    stage: str,
    epochs: int,
    selection: Selection,
    checkpoint: PhaseCheckpoint | None = None,
    patience: int | None = None,
    guard: CollapseGuard | None = None,
) -> TrainingOutcome:
    batches = Batches(data.x, data.y, _concrete(config.batch_size), device.torch_device, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=peak_lr)
    lr = one_cycle(peak_lr, epochs)
    eps = eps_warmup(threat.eps, _concrete(config.eps_warmup_epochs))
    history: list[EpochRecord] = []
    best_score, best_epoch, best_state = -math.inf, 0, _snapshot(model)
    first_epoch = 0
    if checkpoint is not None and checkpoint.saved is not None:
        saved = checkpoint.saved
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        best_score, best_epoch = float(saved["best_score"]), int(saved["best_epoch"])
        best_state = saved["best_state"]
        history = [EpochRecord(**record) for record in saved["history"]]
        notes[:] = saved["notes"]
        if isinstance(step, FgsmStep):
            step.alpha_factor = float(saved["alpha_factor"])
        first_epoch = int(saved["next_epoch"])
        checkpoint.restore_rng()
    for epoch in range(first_epoch, epochs):
        stats = train_epoch(
            model,
            batches,
            step,
            optimizer,
            epoch=epoch,
            epochs=epochs,
            lr=lr,
            eps=eps,
            reporter=reporter,
            stage=stage,
        )
        robust_too = selection is Selection.ROBUST
        clean, robust = validate(model, data.val_x, data.val_y, threat.eps, setting, robust_too)
        if guard is not None:
            guard.check(clean, epoch + 1)
        record = EpochRecord(stage, epoch + 1, stats.loss, stats.train_accuracy, clean, robust)
        history.append(record)
        reporter.emit(
            ProgressEvent(
                stage=stage,
                epoch=epoch + 1,
                epochs=epochs,
                loss=stats.loss,
                clean_accuracy=clean,
                robust_accuracy=robust,
                eta_seconds=stats.seconds * (epochs - epoch - 1),
                message=f"epoch {epoch + 1}/{epochs} done in {stats.seconds:.1f} s",
                samples=stats.samples,
                samples_per_second=stats.samples / stats.seconds if stats.seconds > 0 else None,
            )
        )
        score = robust if robust is not None else clean
        if isinstance(step, FgsmStep) and robust is not None and _collapsed(robust, best_score):
            notes.append(
                f"catastrophic overfitting in epoch {epoch + 1}: validation robust accuracy fell"
                f" from {best_score:.3f} to {robust:.3f}; rolled back to epoch {best_epoch} and"
                f" shrank the FGSM step from {step.alpha_factor:.2f} to"
                f" {step.alpha_factor * 0.8:.2f} x eps"
            )
            model.load_state_dict(best_state)
            step.alpha_factor *= 0.8
        elif selection is Selection.LAST or not score < best_score:
            best_score, best_epoch, best_state = score, epoch + 1, _snapshot(model)
        if checkpoint is not None:
            checkpoint.save(
                {
                    "next_epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "history": [dataclasses.asdict(record) for record in history],
                    "notes": list(notes),
                    "alpha_factor": step.alpha_factor if isinstance(step, FgsmStep) else None,
                }
            )
        if _plateaued(patience, epoch + 1, best_epoch, epochs):
            notes.append(
                f"stopped early after epoch {epoch + 1} of {epochs}: no better validation score"
                f" since epoch {best_epoch}"
            )
            break
    model.load_state_dict(best_state)
    return TrainingOutcome(model.eval(), history, best_epoch, selection.value, config, notes)


def _distill(
    student: nn.Module,
    data: TrainingData,
    threat: ThreatModel,
    config: TrainingConfig,
    device: Device,
    reporter: Reporter,
    generator: torch.Generator,
    setting: AdversarialSetting,
    notes: list[str],
    resume: Resume,
) -> TrainingOutcome:
    """Papernot et al. 2016: teacher at temperature T, student on the teacher's soft labels at
    T, student deployed at T = 1 (its logits as they are).

    Fine-tuning starts teacher and student from the upload with its logits scaled by T (see
    :mod:`workers.engine.training.logit_scale`), so both begin with the upload's predictions.
    The finished teacher is saved with the checkpoints of the student's phase, so a run that
    resumes there does not train the teacher again."""
    if not config.from_scratch:
        notes.append(_start_at_temperature(student, data, config.temperature, device))
    teacher = copy.deepcopy(student)
    peak_lr = _concrete(config.learning_rate)
    teacher_epochs = _concrete(config.teacher_epochs)
    fit = partial(
        _fit,
        threat=threat,
        config=config,
        device=device,
        reporter=reporter,
        generator=generator,
        setting=setting,
        peak_lr=peak_lr,
        selection=Selection.CLEAN,
    )
    finished = resume.finished_teacher()
    if finished is not None:
        teacher.load_state_dict(finished["model"])
        teacher_model = teacher.eval()
        teacher_history = [EpochRecord(**record) for record in finished["history"]]
    else:
        teacher_run = fit(
            teacher,
            TemperatureStep(config.temperature, device.training_autocast()),
            data,
            notes=[],
            stage="teacher",
            epochs=teacher_epochs,
            checkpoint=resume.phase("teacher"),
        )
        teacher_model, teacher_history = teacher_run.model, teacher_run.history
        resume.teacher_done(teacher_model, teacher_history)
    step = DistillationStep(
        teacher_model, config.temperature, config.hard_label_weight, device.training_autocast()
    )
    outcome = fit(
        student,
        step,
        data,
        notes=notes,
        stage="training",
        epochs=_concrete(config.epochs),
        checkpoint=resume.phase("training"),
    )
    outcome.history[:0] = teacher_history
    outcome.notes.append(
        f"teacher trained {teacher_epochs} epochs at T={config.temperature:g}; the student"
        " learned its soft labels at the same T and is deployed at T=1"
    )
    return outcome


def _start_at_temperature(
    model: nn.Module, data: TrainingData, temperature: float, device: Device
) -> str:
    probe = data.x[:256].to(device.torch_device)
    classes = int(torch.cat([data.y, data.val_y]).max()) + 1
    if scale_logits(model, temperature, probe, classes):
        return (
            f"teacher and student started from the upload with its output layer scaled by"
            f" T={temperature:g}: at temperature T both begin with the upload's probabilities"
        )
    return (
        "no output layer whose scaling scales the logits was found: teacher and student"
        " started from the upload as it is, and must learn logits T times larger"
    )


def validate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    setting: AdversarialSetting | None,
    robust: bool,
    batch_size: int = 500,
) -> tuple[float, float | None]:
    """Clean and (training-side, PGD-10) robust accuracy on held-out data, for selecting
    checkpoints only. Reported scores come from :mod:`workers.engine.evaluation`."""
    if len(y) == 0:
        return math.nan, None
    model.eval()
    device = next(model.parameters()).device
    clean = adversarial = 0
    for start in range(0, len(y), batch_size):
        xb = x[start : start + batch_size].to(device)
        yb = y[start : start + batch_size].to(device)
        with torch.no_grad():
            clean += int((model(xb).argmax(1) == yb).sum())
        if robust and setting is not None:
            x_adv = dataclasses.replace(setting, autocast=nullcontext).perturb(
                model,
                xb,
                partial(_cross_entropy, labels=yb),
                eps=eps,
                alpha=2.5 * eps / VALIDATION_PGD_STEPS,
                steps=VALIDATION_PGD_STEPS,
            )
            with torch.no_grad():
                adversarial += int((model(x_adv).argmax(1) == yb).sum())
    model.train()
    return clean / len(y), (adversarial / len(y) if robust else None)


def reinitialize(model: nn.Module, generator: torch.Generator) -> str:
    """Fresh weights for training from scratch. Modules that define ``reset_parameters`` use it;
    elsewhere (graphs interpreted from ONNX) matrices and kernels get PyTorch's default Kaiming
    uniform draw and one-dimensional tensors (biases, norm scales) keep their uploaded values."""
    with torch.no_grad():
        resets: list[Callable[[], None]] = [
            reset
            for m in model.modules()
            if callable(reset := getattr(m, "reset_parameters", None))
        ]
        if resets:
            for reset in resets:
                reset()
            return "trained from scratch: weights re-initialised"
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                fan_in = parameter[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                noise = torch.rand(parameter.shape, generator=generator) * 2 - 1
                parameter.copy_(noise * bound)
    return "trained from scratch: weight matrices re-initialised, biases and scales kept"


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits.float(), labels)


def _plateaued(patience: int | None, done: int, best_epoch: int, epochs: int) -> bool:
    """Early stopping: ``patience`` epochs without a better validation score, counted from the
    later of the best epoch and the one-cycle rate's peak, so the climb never counts."""
    if patience is None or done >= epochs:
        return False
    return done - max(best_epoch, math.ceil(WARMUP_FRACTION * epochs)) >= patience


def _collapsed(robust: float, best: float) -> bool:
    return best > 0 and robust < best - COLLAPSE_DROP and robust < 0.5 * best


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- checkpoints -------------------------------------------------------------------------------


@dataclass
class PhaseCheckpoint:
    """What one ``_fit`` call needs to save its state and to go on from a saved one."""

    checkpointer: Checkpointer
    generator: torch.Generator
    outer: State
    """The rest of the saved state: the run's fingerprint, the phase, a finished teacher."""
    saved: State | None = None
    """This phase's state to go on from, or None to start the phase."""
    saved_rng: State | None = None

    def save(self, fit_state: State) -> None:
        self.checkpointer.save({**self.outer, "fit": fit_state, "rng": capture_rng(self.generator)})

    def restore_rng(self) -> None:
        if self.saved_rng is not None:
            restore_rng(self.saved_rng, self.generator)


@dataclass
class Resume:
    """The saved state of a run (if any) and the checkpointer that keeps saving it.

    State layout: ``{"fingerprint", "phase": "teacher" | "training", "teacher": None |
    {"model", "history"}, "fit": None | {...}, "rng": {...}}``; ``fit`` is the state of the
    phase in progress after its last finished epoch."""

    checkpointer: Checkpointer | None
    fingerprint: str
    generator: torch.Generator
    saved: State | None = None
    teacher: State | None = None
    """The finished teacher of a distillation, saved or just trained."""

    @classmethod
    def load(
        cls, checkpointer: Checkpointer | None, fingerprint: str, generator: torch.Generator
    ) -> Resume:
        saved = checkpointer.load() if checkpointer is not None else None
        if saved is not None and saved.get("fingerprint") != fingerprint:
            saved = None
        teacher = saved.get("teacher") if saved is not None else None
        return cls(checkpointer, fingerprint, generator, saved, teacher)

    @property
    def epochs_done(self) -> int | None:
        if self.saved is None:
            return None
        teacher = self.saved.get("teacher")
        fit = self.saved.get("fit")
        return (len(teacher["history"]) if teacher else 0) + (len(fit["history"]) if fit else 0)

    def phase(self, stage: str) -> PhaseCheckpoint | None:
        if self.checkpointer is None:
            return None
        saved = self.saved if self.saved is not None and self.saved["phase"] == stage else None
        return PhaseCheckpoint(
            self.checkpointer,
            self.generator,
            {"fingerprint": self.fingerprint, "phase": stage, "teacher": self.teacher},
            saved["fit"] if saved is not None else None,
            saved["rng"] if saved is not None else None,
        )

    def finished_teacher(self) -> State | None:
        """A saved teacher, with the random state right after it, restored."""
        if self.saved is None or self.teacher is None:
            return None
        if self.saved.get("fit") is None:
            restore_rng(self.saved["rng"], self.generator)
        return self.teacher

    def teacher_done(self, teacher: nn.Module, history: list[EpochRecord]) -> None:
        self.teacher = {
            "model": teacher.state_dict(),
            "history": [dataclasses.asdict(record) for record in history],
        }
        if self.checkpointer is not None:
            self.checkpointer.save(
                {
                    "fingerprint": self.fingerprint,
                    "phase": "training",
                    "teacher": self.teacher,
                    "fit": None,
                    "rng": capture_rng(self.generator),
                }
            )

    def annotate(self, outcome: TrainingOutcome) -> TrainingOutcome:
        done = self.epochs_done
        if done is None:
            return outcome
        outcome.resumed_from_epoch = done
        outcome.notes.append(
            f"resumed from a checkpoint after {done} finished epoch(s) (stage"
            f" {self.saved['phase'] if self.saved else '?'}); they were not run again"
        )
        return outcome


def _fingerprint(model: nn.Module, data: TrainingData, config: TrainingConfig) -> str:
    """What a saved state must match to be resumed: same configuration, data sizes, shapes."""
    shapes = {name: list(value.shape) for name, value in model.state_dict().items()}
    return json.dumps(
        {
            "config": dataclasses.asdict(config),
            "train": len(data.y),
            "validation": len(data.val_y),
            "shapes": shapes,
        },
        sort_keys=True,
        default=str,
    )
