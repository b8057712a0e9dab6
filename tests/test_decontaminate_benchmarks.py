"""A benchmark named in decontaminate.benchmarks that cannot be read is an error, never a warning: a run
without MBPP says so in its config (and so in every manifest that records the benchmark tasks)."""

from __future__ import annotations

import pytest

from phiray.config import load_config
from phiray.data.ngrams import benchmark_tasks


def load_benchmarks(cfg):
    return benchmark_tasks(cfg.decontaminate.benchmarks, cfg.decontaminate.mbpp_path)


def test_a_missing_benchmark_file_is_an_error(tmp_path):
    cfg = load_config("tiny", overrides=[f"decontaminate.mbpp_path={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match="leave mbpp out of decontaminate.benchmarks"):
        load_benchmarks(cfg)


def test_a_benchmark_left_out_by_config_is_not_loaded(tmp_path, mbpp_dir):
    cfg = load_config(
        "tiny", overrides=[f"decontaminate.mbpp_path={tmp_path / 'nowhere'}", "decontaminate.benchmarks=[humaneval]"]
    )
    tasks, counts = load_benchmarks(cfg)
    assert counts == {"humaneval": 164} and len(tasks) == 164
    full, counts = load_benchmarks(load_config("tiny", overrides=[f"decontaminate.mbpp_path={mbpp_dir}"]))
    assert counts["humaneval"] == 164 and counts["mbpp"] >= 974 and len(full) == sum(counts.values())
