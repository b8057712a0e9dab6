"""benchmarks/RESULTS.md opens with the current table, and every row of it is complete (benchmarks/results.py)."""

import runpy
from pathlib import Path
from types import SimpleNamespace

RESULTS_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "results.py"


def _results():
    return SimpleNamespace(**runpy.run_path(str(RESULTS_PY)))


def test_results_opens_with_the_current_table_and_every_row_is_complete():
    results = _results()
    text = results.RESULTS.read_text()
    assert text.index(results.BEGIN) < text.index("\n## "), "the current table comes before the journal"
    rows = results.read_table(text)
    assert len(rows) >= 10
    assert {r["figure"]: results.problems(r) for r in rows if results.problems(r)} == {}


def test_a_row_with_a_pipe_in_its_command_and_an_empty_goal_parses():
    results = _results()
    text = (
        f"{results.BEGIN}\n| " + " | ".join(results.COLUMNS) + " |\n|" + "---|" * 8 + "\n"
        "| f | 1x | | `a | b` | vm | 1 | 2026-01-01 | abc |\n" + results.END
    )
    [row] = results.read_table(text)
    assert row["goal"] == "" and row["command"] == "`a | b`" and row["commit"] == "abc"
