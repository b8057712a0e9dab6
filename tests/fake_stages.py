"""Three trivial stages for testing the planner: each records that it ran and writes one file."""

from phiray.rundir import Manifest

CALLS: list[str] = []


def _stage(name):
    def run(cfg, rd):
        CALLS.append(name)
        rd.write_text(f"{name}/out.txt", f"{name} lr={cfg.pretrain.lr}")
        return Manifest(stage=name, rows={"out": 1}, headline={"lr": cfg.pretrain.lr})

    return run


run_a, run_b, run_c = _stage("a"), _stage("b"), _stage("c")


def run_boom(cfg, rd):
    CALLS.append("boom")
    raise RuntimeError("boom")
