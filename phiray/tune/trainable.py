"""One sweep trial: a short proxy pretrain with phiray's training loop, reporting to Ray Tune.

``run_trial(config, context)`` is the Tune function trainable (wrapped by ``tune.with_parameters``).
``config["point"]`` is the trial's point (see :mod:`phiray.tune.space`); ``context`` the sweep's
:class:`TrialContext`, whose ``specs[point_id]`` is the :class:`~phiray.train.spec.TrainSpec`
:func:`phiray.train.driver.build_spec` made in the driver (mixture, proxy model, phase, paths of the
already-packed shards: nothing is re-tokenised). The loop is :class:`phiray.train.loop.Trainer`
in this process (world size 1, plain PyTorch), with the reports going to ``ray.tune.report``:
validation loss per source every ``eval_every`` steps, pass@1 on validation exercises when due, and the
sequences drawn per source so far (the data loader's own count: proof that the weights reached it).

Resume: with ``context.checkpoint`` every report carries a checkpoint (engine + loop state); a trial
restored by ``Tuner.restore`` continues from it. Every attempt leaves a record under
``sweep/trials/<trial_id>/`` (start step, last step, steps trained, whether it finished), and a finished
trial writes ``final.json`` *before* its last report: a trial that Tune re-schedules after a driver kill
although it had finished only re-reports that record and trains nothing.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from phiray.config import SandboxConfig
from phiray.evals.benchmarks import STOP_SEQUENCES, load_exercises
from phiray.evals.scoring import score_samples, truncate
from phiray.model.generate import Generator, SamplingParams
from phiray.model.tokenizer import load_tokenizer
from phiray.rundir import RunDir
from phiray.sandbox.placement import sandbox_for
from phiray.train.spec import TrainSpec

TRIALS_DIR = "sweep/trials"


class TrialContext(BaseModel):
    """What every trial of a sweep shares, built once by the sweep stage (``tune.with_parameters``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specs: dict[str, TrainSpec] = Field(description="Point id -> the trial's training spec (proxy model, mixture).")
    threads: int = Field(ge=1, description="torch threads of a trial (its CPU share, not every core of the node).")
    checkpoint: bool = Field(description="Checkpoint at every report (a resumed sweep continues unfinished trials).")
    pass_every: int = Field(ge=0, description="Steps between pass@1 measurements (0: at the last step only).")
    objective: str = Field(description="The metric the sweep optimises (pass@... is measured at every report).")
    validation: list[dict[str, Any]] = Field(default_factory=list, description="Validation exercises for pass@1.")
    sandbox: SandboxConfig = Field(description="Where and how pass@1 completions execute.")
    max_new_tokens: int = Field(ge=1, description="Generation cap of the pass@1 completions.")


class TrialRecord:
    """Attempt records of one trial in the run dir (plain JSON: readable after any kill)."""

    def __init__(self, rd: RunDir, trial_id: str):
        self.rd, self.dir = rd, f"{TRIALS_DIR}/{trial_id}"
        self.attempt: dict[str, Any] = {}

    def final(self) -> dict[str, Any] | None:
        path = f"{self.dir}/final.json"
        return self.rd.read_json(path) if self.rd.exists(path) else None

    def start(self, step: int, replayed: bool = False) -> None:
        index = sum(1 for name in self.rd.listdir(self.dir) if name.startswith("attempt-"))
        self.attempt = {
            "attempt": index,
            "pid": os.getpid(),
            "start_step": step,
            "last_step": step,
            "steps_trained": 0,
            "finished": False,
            "replayed": replayed,
            "started_at": time.time(),
        }
        self._write()

    def progress(self, step: int) -> None:
        self.attempt.update(last_step=step, steps_trained=step - self.attempt["start_step"])
        self._write()

    def finish(self, metrics: dict[str, Any]) -> None:
        """Called before the last report: from here on the trial counts as done."""
        self.rd.write_json(f"{self.dir}/final.json", metrics)
        self.attempt["finished"] = True
        self._write()

    def _write(self) -> None:
        self.rd.write_json(f"{self.dir}/attempt-{self.attempt['attempt']:03d}.json", self.attempt)


def read_attempts(rd: RunDir, trial_id: str) -> list[dict[str, Any]]:
    directory = f"{TRIALS_DIR}/{trial_id}"
    return [rd.read_json(f"{directory}/{name}") for name in rd.listdir(directory) if name.startswith("attempt-")]


class ValidationPassAt1:
    """pass@1 of the model on a few validation exercises (never the test split): greedy completions scored
    in the sandbox."""

    def __init__(
        self, rows: list[dict[str, Any]], rd: RunDir, tokenizer_dir: str, sandbox: SandboxConfig, max_new_tokens: int
    ):
        self.tasks = load_exercises(rows, "validation")
        with rd.local_dir(tokenizer_dir, upload=False) as local:
            self.tokenizer = load_tokenizer(local)
        self.sandbox = sandbox_for(sandbox)
        self.max_new_tokens = max_new_tokens

    def __call__(self, model) -> dict[str, float]:
        # In process on the trial's live model: a few dozen greedy samples, far below
        # phiray.evals.generation.AUTO_VLLM_MIN_SAMPLES, where a vLLM engine start (plus saving the model for
        # it) costs more than the generation (benchmarks/eval_generation.py, RESULTS.md).
        device = str(next(model.parameters()).device)
        engine = Generator(model, self.tokenizer, device=device)
        params = SamplingParams(max_tokens=self.max_new_tokens, temperature=0.0, stop=STOP_SEQUENCES)
        outputs = engine.generate([t.prompt for t in self.tasks], params)
        samples = [{"task_id": t.task_id, "completion": truncate(c[0].text)} for t, c in zip(self.tasks, outputs)]
        summary, _ = score_samples(self.tasks, samples, self.sandbox, [1])
        return {"pass@1": float(summary.get("pass@1", 0.0)), "pass@1_tasks": len(self.tasks)}


def _pass_due(step: int, max_steps: int, every: int, objective: str) -> bool:
    return objective.startswith("pass@") or step >= max_steps or (every > 0 and step % every == 0)


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """The Tune function trainable (see the module docstring)."""
    import torch
    from ray import tune

    from phiray.train.loop import Trainer

    point = config["point"]
    spec = context.specs[point["id"]]
    torch.set_num_threads(context.threads)  # the trial's CPU share, not every core of the node
    rd = spec.rundir()
    record = TrialRecord(rd, tune.get_context().get_trial_id())
    final = record.final()
    if final is not None:
        record.start(int(final.get("step", 0)), replayed=True)
        tune.report(final)
        return
    trainer = Trainer(spec, 0, 1, distributed=False)
    trainer.resume_from(tune.get_checkpoint())
    record.start(trainer.step)
    max_steps = spec.phase.max_steps
    scorer = (
        ValidationPassAt1(context.validation, rd, spec.tokenizer_dir, context.sandbox, context.max_new_tokens)
        if context.validation
        else None
    )

    def report(metrics: dict[str, Any], directory: str | None) -> None:
        step = int(metrics["step"])
        out = {k: v for k, v in metrics.items() if v is not None}
        out.update({f"sequences/{k}": v for k, v in trainer.history["sources"].items()})
        out["point_id"] = point["id"]
        if scorer is not None and _pass_due(step, max_steps, context.pass_every, context.objective):
            out.update(scorer(trainer.engine.module))
        record.progress(step)
        if step >= max_steps:
            record.finish(out)
        if not context.checkpoint or step == 0:
            tune.report(out)
            return
        # Engine + loop state only (the loop's own checkpoints also write HF weights: not needed here).
        with tempfile.TemporaryDirectory(prefix="phiray-trial-") as tmp:
            trainer.save(tmp)
            tune.report(out, checkpoint=tune.Checkpoint.from_directory(tmp))

    if trainer.step >= max_steps:  # restored from the last checkpoint of a trial that had finished
        report(trainer.history["val"][-1] | {"step": trainer.step}, None)
        return
    trainer.run(report, checkpoint_every=None)  # reports at every evaluation (sweep.eval_every)
