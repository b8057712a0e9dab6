"""Isolated execution of untrusted code (namespaces + rlimits), verdict protocol, pool.

    from phiray.sandbox import Sandbox, Verdict
    v = Sandbox(cfg.sandbox).check(code, tests, entry_point="f")

See executor.py (caller side), launcher.py (process tree), judge.py/candidate.py/wire.py (the tests run in a
process the candidate cannot reach, and see its results as plain data only).
"""

from phiray.sandbox.executor import STATUSES, PoolStats, Sandbox, SandboxUnavailable, Verdict, sweep_uid

__all__ = ["STATUSES", "PoolStats", "Sandbox", "SandboxUnavailable", "Verdict", "sweep_uid"]
