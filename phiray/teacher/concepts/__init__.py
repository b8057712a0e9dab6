"""A catalogue of programming concepts, each a seeded generator of exercise *instances*.

A concept's ``make(rng)`` returns a :class:`Spec`: a function name, parameters, a docstring, the
reference body, and test inputs, all randomised (names, values, wording, difficulty). :func:`build`
turns a spec into a HumanEval-style exercise: ``prompt`` (preamble + signature + docstring),
``solution`` (the body), and ``tests`` whose expected values come from running the reference itself, so
every exercise's tests pass by construction (the sandbox then re-checks each one in isolation).
The *family* of an exercise is its concept's name: held-out splits are made by family, so no prompt
of a held-out family can appear in training.
"""

from __future__ import annotations

import copy
import random
import textwrap
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

WORDS = (
    "apple banana cherry dragon eagle forest garden harbor island jungle kettle lemon mango night ocean "
    "pepper quartz river sunset tiger umbrella violet window yellow zebra anchor bridge castle desert engine "
    "falcon glacier hammer igloo jacket koala ladder marble nectar orbit pencil quiver rocket saddle tunnel "
    "valley walnut xylophone yogurt zephyr amber basil cedar dune ember fern grove honey ivory jade kiwi "
    "lotus maple nickel olive pearl quill raven sage thyme urchin vapor willow yarn zinc comet pixel "
    "python lambda vector matrix string module socket buffer cursor folder"
).split()

PARAM_NAMES = {
    "text": ["text", "s", "sentence", "phrase", "message", "word_string"],
    "items": ["items", "nums", "numbers", "values", "data", "lst", "seq"],
    "n": ["n", "num", "number", "k", "count", "limit"],
    "words": ["words", "names", "tokens", "labels", "strings"],
    "mapping": ["mapping", "d", "table", "lookup", "counts", "scores"],
}


class Rng(random.Random):
    """``random.Random`` plus the small vocabulary generators the concepts share."""

    def name(self, *choices: str) -> str:
        return self.choice(choices)

    def param(self, kind: str, avoid: tuple[str, ...] = ()) -> str:
        return self.choice([p for p in PARAM_NAMES[kind] if p not in avoid])

    def word(self) -> str:
        return self.choice(WORDS)

    def words(self, lo: int = 2, hi: int = 6) -> list[str]:
        return [self.word() for _ in range(self.randint(lo, hi))]

    def sentence(self, lo: int = 2, hi: int = 6) -> str:
        return " ".join(self.words(lo, hi))

    def ints(self, lo: int = 0, hi: int = 8, vmin: int = -20, vmax: int = 50) -> list[int]:
        return [self.randint(vmin, vmax) for _ in range(self.randint(lo, hi))]


@dataclass
class Spec:
    name: str
    params: list[str]
    doc: str
    body: str
    inputs: list[tuple[Any, ...]]
    difficulty: int = 1
    preamble: str = ""
    wrap: str = ""  # e.g. "list" for generators: tests call list(f(...))
    extra_tests: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Concept:
    name: str
    area: str
    explain: str
    make: Callable[[Rng], Spec]


CONCEPTS: dict[str, Concept] = {}


def concept(area: str, explain: str) -> Callable[[Callable[[Rng], Spec]], Callable[[Rng], Spec]]:
    """Register ``make`` under its function name."""

    def register(make: Callable[[Rng], Spec]) -> Callable[[Rng], Spec]:
        CONCEPTS[make.__name__] = Concept(make.__name__, area, explain, make)
        return make

    return register


def _docstring(doc: str, indent: str = "    ") -> str:
    head, _, rest = doc.partition("\n\n")  # wrap the prose; keep a worked example's lines as they are
    lines = textwrap.fill(head, 88, break_long_words=False).splitlines() + (["", *rest.splitlines()] if rest else [])
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""\n'
    return (
        f'{indent}"""'
        + lines[0]
        + "\n"
        + "".join(f"{indent}{ln}\n" if ln else "\n" for ln in lines[1:])
        + f'{indent}"""\n'
    )


def _call(spec: Spec, args: tuple[Any, ...]) -> str:
    call = f"{spec.name}({', '.join(repr(a) for a in args)})"
    return f"{spec.wrap}({call})" if spec.wrap else call


def build(spec: Spec, rng: Rng) -> dict[str, Any]:
    """Spec -> exercise dict (prompt, solution, tests, entry_point, signature, docstring, difficulty)."""
    signature = f"def {spec.name}({', '.join(spec.params)}):"
    body = textwrap.indent(textwrap.dedent(spec.body).strip("\n"), "    ") + "\n"
    namespace: dict[str, Any] = {}
    # Our own template code (not a model's output): run in-process to compute the expected values.
    exec(compile(spec.preamble + "\n" + signature + "\n" + body, f"<concept {spec.name}>", "exec"), namespace)
    func = namespace[spec.name]
    lines, seen = [], set()
    for args in spec.inputs:
        if repr(args) in seen:
            continue
        seen.add(repr(args))
        result = func(*copy.deepcopy(args))
        if spec.wrap == "list":
            result = list(result)
        lines.append(f"assert {_call(spec, args)} == {result!r}")
    doc = spec.doc
    if lines and rng.random() < 0.5:  # a worked example in the docstring, as HumanEval prompts often have
        first = lines[0][len("assert ") :]
        call, expected = first.rsplit(" == ", 1)
        doc = f"{doc}\n\n>>> {call}\n{expected}"
    docstring = _docstring(doc)
    preamble = spec.preamble.strip("\n")
    prompt = (preamble + "\n\n\n" if preamble else "") + signature + "\n" + docstring
    tests = "\n".join(lines + spec.extra_tests) + "\n"
    return {
        "prompt": prompt,
        "solution": body,
        "tests": tests,
        "entry_point": spec.name,
        "signature": signature,
        "docstring": doc,
        "difficulty": spec.difficulty,
    }


def generate(concept_name: str, seed: int) -> dict[str, Any]:
    """One exercise instance of a concept, fully determined by (concept, seed)."""
    _load_all()
    rng = Rng(f"{concept_name}:{seed}")
    spec = CONCEPTS[concept_name].make(rng)
    return {"concept": concept_name, **build(spec, rng)}


def all_concepts() -> dict[str, Concept]:
    _load_all()
    return CONCEPTS


_LOADED = threading.Event()
_LOAD_LOCK = threading.Lock()


def _load_all() -> None:
    """Import every concept module once. Guarded by a lock and set only after the last import: generation
    actors run several batches on threads at once, and a thread that saw the catalogue half-registered (one
    module imported) would look a concept up before its module registered it (``KeyError: 'is_prime'``)."""
    if _LOADED.is_set():
        return
    with _LOAD_LOCK:
        from phiray.teacher.concepts import collections_, numbers, strings  # noqa: F401  (registration)

        _LOADED.set()
