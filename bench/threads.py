"""How fast is a PGD training step under each thread policy, alone and beside a busy neighbour?

OpenMP reads its wait policy once, when torch loads, so every policy runs in a child process of
its own. A child trains the small MNIST CNN of Wong et al. read back from ONNX (as the engine
trains an upload), PGD-10, batch 128, on random inputs, and prints milliseconds per step.
"Beside a neighbour" starts two children with the same policy at once, as two workers or a
worker and a test suite would run.

    python bench/threads.py               # every policy, alone and in pairs
    python bench/threads.py --steps 20 --policies governed passive

Policies: ``governed`` is the default the engine runs with (OpenMP's spin, thread count from
:mod:`workers.engine.threads`); ``passive`` sleeps idle threads on every CPU; ``spin`` keeps
every CPU spinning with no governor; ``one`` computes on one thread.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

POLICIES = ("governed", "passive", "spin", "one")
ROOT = Path(__file__).resolve().parents[1]


def child(policy: str, steps: int) -> None:
    import workers  # noqa: F401  first: decides the OpenMP wait policy before torch loads

    # isort: split
    import torch
    import torch.nn.functional as F

    from workers.engine.models.loading import load_model
    from workers.engine.models.registry import small_cnn
    from workers.engine.spec import ModelFormat, ModelSource
    from workers.engine.threads import governed_threads

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "cnn.onnx"
        torch.onnx.export(
            small_cnn((1, 28, 28), 10),
            (x[:1],),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
        model = load_model(ModelSource(path=path, format=ModelFormat.ONNX)).module
    if policy == "one":
        torch.set_num_threads(1)
    optimiser = torch.optim.Adam(model.parameters(), 1e-3)
    eps, alpha = 0.3, 0.075

    def step() -> None:
        delta = (torch.rand_like(x) * 2 - 1) * eps
        for _ in range(10):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
        optimiser.zero_grad()
        F.cross_entropy(model((x + delta).clamp(0, 1)), y).backward()
        optimiser.step()

    with governed_threads() if policy == "governed" else nullcontext():
        for _ in range(3):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        elapsed = time.perf_counter() - start
    print(f"{elapsed / steps * 1000:.0f}", flush=True)


def _environment(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if policy == "spin":
        env["OMP_WAIT_POLICY"] = "ACTIVE"
    env["PYTHONPATH"] = str(ROOT)
    return env


def run(policy: str, steps: int, copies: int) -> list[str]:
    command = [sys.executable, __file__, "--child", policy, "--steps", str(steps)]
    children = [
        subprocess.Popen(command, env=_environment(policy), stdout=subprocess.PIPE, text=True)
        for _ in range(copies)
    ]
    return [c.communicate()[0].strip() for c in children]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--child", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    print(f"ms per PGD-10 step, batch 128, {os.cpu_count()} CPUs")
    print(f"{'policy':<10} {'alone':>7} {'beside a neighbour (each)':>28}")
    for policy in args.policies:
        alone = run(policy, args.steps, 1)[0]
        pair = " / ".join(run(policy, args.steps, 2))
        print(f"{policy:<10} {alone:>7} {pair:>28}", flush=True)


if __name__ == "__main__":
    main()
