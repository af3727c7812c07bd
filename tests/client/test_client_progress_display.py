"""Progress on stderr: a bar on a terminal, a line per stage, per epoch and per new message
elsewhere, nothing for --json."""

from __future__ import annotations

import io

from client.domain import JobEvent, JobState, Progress
from client.progress_display import BarDisplay, LineDisplay, SilentDisplay, choose_display


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress(stage: str, **fields: object) -> JobEvent:
    return JobEvent(job_id="j1", state=JobState.RUNNING, progress=Progress(stage=stage, **fields))  # type: ignore[arg-type]


def test_display_is_a_bar_on_a_terminal_lines_elsewhere_and_silent_for_json() -> None:
    assert isinstance(choose_display(quiet=False, stream=Terminal()), BarDisplay)
    assert isinstance(choose_display(quiet=False, stream=io.StringIO()), LineDisplay)
    assert isinstance(choose_display(quiet=True, stream=Terminal()), SilentDisplay)


def test_line_display_prints_one_line_per_stage_and_per_finished_epoch() -> None:
    stream = io.StringIO()
    display = LineDisplay(stream)

    display.show(progress("loading", message="reading model and data"))
    for epoch in (1, 2):
        for step in (1, 2, 3):
            display.show(progress("training", epoch=epoch, epochs=2, step=step, steps=3, loss=1.0))
        display.show(
            progress("training", epoch=epoch, epochs=2, loss=0.5, clean_accuracy=0.9,
                     robust_accuracy=0.4, message=f"epoch {epoch}/2 done")
        )  # fmt: skip
    display.show(progress("evaluating", step=1, steps=7, message="original: fgsm"))
    display.show(progress("evaluating", step=2, steps=7, message="original: pgd-ce"))

    lines = stream.getvalue().splitlines()
    assert lines[0] == "loading: reading model and data"
    assert lines[2] == "training epoch 1/2: loss 0.500, clean 90.0%, robust 40.0%"
    assert lines[3] == "training epoch 2/2: loss 0.500, clean 90.0%, robust 40.0%"
    assert lines[4] == "evaluating: original: fgsm"
    assert lines[5] == "evaluating: original: pgd-ce"
    assert len(lines) == 6


def test_line_display_prints_each_new_evaluation_message_after_the_stage_line() -> None:
    stream = io.StringIO()
    display = LineDisplay(stream)
    running = JobEvent(job_id="j1", state=JobState.RUNNING, job=None)

    display.show(running)
    display.show(progress("training", epoch=1, epochs=1, step=1, steps=2, loss=1.0))
    opening = "hardened: evaluating 1000 samples, 991 correct; estimated at most 685 s"
    display.show(progress("evaluating", step=0, steps=8, eta_seconds=685, message=opening))
    display.show(progress("evaluating", step=2, steps=8, message="hardened: apgd-t on 938, 135 s"))
    display.show(progress("evaluating", step=2, steps=8, message="hardened: apgd-t on 938, 135 s"))
    display.show(progress("evaluating", step=3, steps=8, message="hardened: apgd-t: 926/1000"))

    assert stream.getvalue().splitlines() == [
        "training epoch 1/1: loss 1.000",
        f"evaluating: {opening}, eta 11m25s",
        "evaluating: hardened: apgd-t on 938, 135 s",
        "evaluating: hardened: apgd-t: 926/1000",
    ]


def test_line_display_keeps_training_steps_without_a_new_message_quiet() -> None:
    stream = io.StringIO()
    display = LineDisplay(stream)

    display.show(progress("training", message="restarting: smaller step"))
    for step in (1, 2, 3):
        display.show(progress("training", epoch=1, epochs=2, step=step, steps=3, loss=1.0))

    assert stream.getvalue().splitlines() == ["training: restarting: smaller step"]


def test_bar_display_shows_the_latest_evaluation_message() -> None:
    stream = Terminal()
    display = BarDisplay(stream)

    display.show(progress("evaluating", step=1, steps=8, message="hardened: fgsm: 950/1000"))
    display.show(progress("evaluating", step=2, steps=8, message="hardened: apgd-ce: 931/1000"))
    display.close()

    last = stream.getvalue().split("\r")[-1]
    assert "evaluating" in last
    assert "2/8" in last
    assert "hardened: apgd-ce: 931/1000" in last


def test_bar_display_writes_the_stage_and_metrics_to_its_stream() -> None:
    stream = Terminal()
    display = BarDisplay(stream)

    display.show(progress("training", epoch=1, epochs=2, step=2, steps=4, loss=0.75))
    display.close()

    text = stream.getvalue()
    assert "training 1/2" in text
    assert "loss 0.750" in text
