"""The four hardening methods, each a short composition of steps, the loop and a validation.

Adversarial methods keep the epoch with the best robust accuracy on held-out data (robust
overfitting, Rice et al. 2020). FGSM training additionally watches for catastrophic overfitting
(Wong et al. 2020: robust accuracy under PGD collapsing within an epoch) and recovers by rolling
back to the best epoch and shrinking the step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.engine.attacks.norms import ball
from workers.engine.attacks.perturb import Domain, perturb
from workers.engine.device import Device
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import Method, ThreatModel, TrainingConfig
from workers.engine.training.loop import Batches, Step, train_epoch
from workers.engine.training.schedules import eps_warmup, one_cycle
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
    notes: list[str] = field(default_factory=list)


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
    domain: Domain,
    config: TrainingConfig,
    device: Device,
    reporter: Reporter,
    generator: torch.Generator,
) -> TrainingOutcome:
    """Harden a copy of ``model`` with ``config.method``; the argument is left untouched."""
    student = copy.deepcopy(model).to(device.torch_device)
    notes: list[str] = []
    if config.from_scratch:
        notes.append(reinitialize(student, generator))
    setting = AdversarialSetting(
        ball(threat.norm), domain.to(device.torch_device), generator, device.training_autocast()
    )
    if config.method is Method.DISTILLATION:
        return _distill(student, data, threat, config, device, reporter, generator, setting, notes)
    step: Step
    if config.method is Method.PGD:
        step = PgdStep(setting, config.attack_steps, config.step_size)
    elif config.method is Method.FGSM:
        step = FgsmStep(setting, (config.step_size / threat.eps) if config.step_size else 1.25)
    else:
        step = TradesStep(setting, config.attack_steps, config.trades_beta, config.step_size)
    return _fit(
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
        peak_lr=config.learning_rate or (5e-3 if config.from_scratch else 1e-3),
        stage="training",
        epochs=config.epochs,
        select_robust=config.select_best_robust,
    )


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
    select_robust: bool,
) -> TrainingOutcome:
    batches = Batches(data.x, data.y, config.batch_size, device.torch_device, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=peak_lr)
    lr = one_cycle(peak_lr, epochs)
    eps = eps_warmup(threat.eps, config.eps_warmup_epochs)
    history: list[EpochRecord] = []
    best_score, best_epoch, best_state = -math.inf, 0, _snapshot(model)
    for epoch in range(epochs):
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
        clean, robust = validate(model, data.val_x, data.val_y, threat.eps, setting, select_robust)
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
            )
        )
        score = robust if (select_robust and robust is not None) else clean
        if isinstance(step, FgsmStep) and robust is not None and _collapsed(robust, best_score):
            notes.append(
                f"catastrophic overfitting in epoch {epoch + 1}: validation robust accuracy fell"
                f" from {best_score:.3f} to {robust:.3f}; rolled back to epoch {best_epoch} and"
                f" shrank the FGSM step from {step.alpha_factor:.2f} to"
                f" {step.alpha_factor * 0.8:.2f} x eps"
            )
            model.load_state_dict(best_state)
            step.alpha_factor *= 0.8
            continue
        if score > best_score or not select_robust:
            best_score, best_epoch, best_state = score, epoch + 1, _snapshot(model)
    model.load_state_dict(best_state)
    selection = "best validation robust accuracy" if select_robust else "last epoch"
    return TrainingOutcome(model.eval(), history, best_epoch, selection, notes)


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
) -> TrainingOutcome:
    """Papernot et al. 2016: teacher at temperature T, student on the teacher's soft labels at
    T, student deployed at T = 1 (its logits as they are)."""
    teacher = copy.deepcopy(student)
    peak_lr = config.learning_rate or (5e-3 if config.from_scratch else 1e-3)
    teacher_epochs = config.teacher_epochs or config.epochs
    fit = partial(
        _fit,
        threat=threat,
        config=config,
        device=device,
        reporter=reporter,
        generator=generator,
        setting=setting,
        peak_lr=peak_lr,
        select_robust=False,
    )
    teacher_run = fit(
        teacher,
        TemperatureStep(config.temperature, device.training_autocast()),
        data,
        notes=[],
        stage="teacher",
        epochs=teacher_epochs,
    )
    step = DistillationStep(
        teacher_run.model, config.temperature, config.hard_label_weight, device.training_autocast()
    )
    outcome = fit(student, step, data, notes=notes, stage="training", epochs=config.epochs)
    outcome.history[:0] = teacher_run.history
    outcome.notes.append(
        f"teacher trained {teacher_epochs} epochs at T={config.temperature:g}; the student"
        " learned its soft labels at the same T and is deployed at T=1"
    )
    return outcome


def validate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    setting: AdversarialSetting,
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
        if robust:
            x_adv = perturb(
                model,
                xb,
                partial(_cross_entropy, labels=yb),
                ball=setting.ball,
                eps=eps,
                alpha=2.5 * eps / VALIDATION_PGD_STEPS,
                steps=VALIDATION_PGD_STEPS,
                domain=setting.domain,
                generator=setting.generator,
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


def _collapsed(robust: float, best: float) -> bool:
    return best > 0 and robust < best - COLLAPSE_DROP and robust < 0.5 * best


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
