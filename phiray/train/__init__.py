"""Training: the shared per-worker loop (loop.py), engines (DeepSpeed | DDP), token-shard sampling,
schedules/metrics, and the Ray Train driver (driver.py: ``fit_phase``)."""
