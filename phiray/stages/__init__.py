"""One module per stage, each ``run(cfg: RunConfig, run_dir: RunDir) -> Manifest``.

Stages are thin: they wire Ray (Dataset pipelines, TorchTrainer, Tuner) around the plain code in
``phiray.data``, ``phiray.teacher``, ``phiray.model``, ``phiray.train``, ``phiray.sandbox`` and
``phiray.evals``. The table of stages, their config sections and their upstream stages lives in
``phiray.cli.STAGES``; the planner that decides what to skip lives in ``phiray.pipeline``.

Contract for a stage module:
- read inputs only from ``run_dir`` (upstream stages' outputs), write only under ``run_dir/<stage>/``;
- be re-runnable: clear stale outputs it will rewrite (``run_dir.remove(stage, "part")``) but may keep
  its own resumable state (request caches, training checkpoints) when it can tell it is still valid;
- return a ``Manifest`` with rows/metrics/headline/outputs; the runner stamps the config hash,
  upstream run ids, times and versions and writes it last.
"""
