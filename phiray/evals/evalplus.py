"""HumanEval+ and MBPP+ (EvalPlus, Liu et al. 2023): the same problems with many more, stricter test inputs.

EvalPlus publishes its data as release files, not in its PyPI package (the ``evalplus`` wheel downloads
them from GitHub at run time, which cannot work offline). phiray reads the files in their own format —
``HumanEvalPlus*.jsonl[.gz]`` / ``MbppPlus*.jsonl[.gz]``, one task per line with ``task_id``, ``prompt``,
``canonical_solution``, ``entry_point``, ``base_input``, ``plus_input``, ``atol`` — from
``evaluate.evalplus_path`` (a directory or a file), else ``$PHIRAY_EVALPLUS_PATH``, else EvalPlus's own
cache directory (``~/.cache/evalplus``, where ``evalplus`` leaves the files it downloaded).

Scoring is differential testing, as EvalPlus does it: for every input (base then plus), the canonical
solution runs in the judge (trusted: it is the benchmark's) and the candidate runs in the sandbox, and the
two results must agree — exactly, or within ``atol`` (1e-6 when the expected value is a float and ``atol``
is 0) for floats. HumanEval/32 (``find_zero``) accepts any root: ``|poly(xs, x)| <= atol``. MBPP+ inputs
are taken as JSON gives them (lists where the original passed tuples): the expected value comes from the
canonical solution on the very same values, so the comparison stays fair.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

from phiray.evals.tasks import Task, mbpp_prompt, read_jsonl, signature_of

FILES = {"humaneval+": "HumanEvalPlus", "mbpp+": "MbppPlus"}
# MBPP+ entry points whose answers are compared as sets (the problem does not fix an order).
SET_ANSWERS = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum"}
SET_ANSWERS |= {"intersection_array", "find_dissimilar", "Diff"}


def evalplus_dir(configured: str | None = None) -> Path:
    """Where the EvalPlus files are looked for (see the module docstring for the order)."""
    for candidate in (configured, os.environ.get("PHIRAY_EVALPLUS_PATH")):
        if candidate:
            return Path(candidate).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "evalplus"


def evalplus_file(name: str, configured: str | None = None) -> Path:
    """The data file of ``humaneval+`` or ``mbpp+`` (the newest version when several are present)."""
    stem, where = FILES[name], evalplus_dir(configured)
    if where.is_file():
        return where
    found = sorted(where.glob(f"{stem}*.jsonl*")) if where.is_dir() else []
    found = [f for f in found if re.fullmatch(rf"{stem}(-v[\d.]+)?\.jsonl(\.gz)?", f.name)]
    if not found:
        raise FileNotFoundError(
            f"{name}: no {stem}.jsonl[.gz] in {where}. Download {stem}.jsonl.gz from "
            f"https://github.com/evalplus/{stem.lower()}_release/releases and put it there, or set "
            "evaluate.evalplus_path / $PHIRAY_EVALPLUS_PATH to its directory or file"
        )
    return found[-1]


def load_evalplus(name: str, path: str | None = None) -> list[Task]:
    """HumanEval+ or MBPP+ as tasks whose tests compare the candidate with the canonical solution."""
    file = evalplus_file(name, path)
    tasks = []
    for row in read_jsonl(file):
        missing = {"task_id", "prompt", "canonical_solution", "entry_point", "base_input", "plus_input"} - set(row)
        if missing:
            raise ValueError(f"{file}: task {row.get('task_id')!r} lacks {sorted(missing)} (not an EvalPlus file?)")
        tasks.append(_humaneval_plus(row) if name == "humaneval+" else _mbpp_plus(row))
    return tasks


def _humaneval_plus(row: dict) -> Task:
    reference = row["prompt"] + row["canonical_solution"]
    oracle = "root" if row["entry_point"] == "find_zero" else "equal"
    return Task(
        task_id=row["task_id"],  # EvalPlus's ids (HumanEval/0): a HumanEval samples file scores on both
        prompt=row["prompt"],
        tests=differential_tests(reference, row, oracle),
        entry_point=row["entry_point"],
        reference=reference,
    )


def _mbpp_plus(row: dict) -> Task:
    """phi-1's MBPP prompt (signature + docstring with the task and its example asserts), as for ``mbpp``."""
    text = row["prompt"].strip().strip('"').strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    asserts = [line for line in lines if line.startswith("assert")]
    words = " ".join(line for line in lines if not line.startswith("assert"))
    code, entry = row["canonical_solution"], row["entry_point"]
    oracle = "set" if entry in SET_ANSWERS else "equal"
    return Task(
        task_id=row["task_id"],
        prompt=mbpp_prompt(words, asserts, signature_of(code, entry)),
        tests=differential_tests(code, row, oracle),
        entry_point=entry,
        reference=code.rstrip() + "\n",
    )


def differential_tests(reference: str, row: dict, oracle: str) -> str:
    """The tests' source: the canonical program, every input, and ``check(candidate)`` comparing the two."""
    inputs = list(row["base_input"]) + list(row["plus_input"])
    return "\n".join(
        [
            "import copy as _copy, json as _json, math as _math",
            inspect.getsource(agrees),
            f"_REFERENCE = {{}}\nexec(compile({reference!r}, '<canonical solution>', 'exec'), _REFERENCE)",
            f"_INPUTS = _json.loads({json.dumps(inputs)!r})",
            "def check(candidate):",
            "    for _i, _args in enumerate(_INPUTS):",
            f"        _expected = _REFERENCE[{row['entry_point']!r}](*_copy.deepcopy(_args))",
            "        _got = candidate(*_copy.deepcopy(_args))",
            f"        assert agrees(_got, _expected, _args, {float(row.get('atol') or 0)!r}, {oracle!r}), "
            "f'input #{_i}: got {_got!r:.200}, expected {_expected!r:.200}'",
            "",
        ]
    )


def agrees(got, expected, args, atol: float, oracle: str) -> bool:
    """EvalPlus's comparison (runs inside the tests, so it imports what it uses)."""
    import math

    if oracle == "root":  # find_zero(xs): any x with poly(xs, x) ~ 0
        return isinstance(got, (int, float)) and abs(sum(c * math.pow(got, i) for i, c in enumerate(args[0]))) <= (
            atol or 1e-6
        )
    if oracle == "set":
        try:
            return set(got) == set(expected)
        except TypeError:
            return False
    if got == expected:
        return True
    floats = isinstance(expected, float) or (
        isinstance(expected, (list, tuple)) and expected and all(isinstance(x, float) for x in expected)
    )
    tol = atol or (1e-6 if floats else 0.0)
    if not tol or type(got) is not type(expected):
        return False
    pairs = list(zip(got, expected)) if isinstance(expected, (list, tuple)) else [(got, expected)]
    if isinstance(expected, (list, tuple)) and len(got) != len(expected):
        return False
    try:
        return all(math.isclose(g, e, rel_tol=1e-7, abs_tol=tol) for g, e in pairs)
    except TypeError:
        return False
