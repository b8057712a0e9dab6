"""The sweep's search space: points on the simplex of mixture weights, crossed with optional dimensions.

A *point* is a plain dict, one per trial, decided in the driver before Tune starts (so the sweep is
seeded, listed in ``sweep/space.json`` before any trial runs, and identical after a resume)::

    {"id": "p003", "mixture": {"code": 0.2, "textbooks": 0.8, "exercises": 0.0},
     "passes": 2.0 | None, "lr": 3e-3 | None, "extra": {"pretrain.weight_decay": 0.1}}

Mixtures come from seeded Dirichlet draws (random search on the simplex) or from the lattice of weights
that are multiples of ``1/grid_steps``, plus any explicit ``sweep.mixtures``. Each point's ``overrides``
(:func:`point_overrides`) are dotted config paths: the trial's config is the run's config + the proxy
overrides + these, and ``best.yaml`` is the winning point's overrides alone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import numpy as np

from phiray.config import SweepConfig, set_path


def normalise(mixture: dict[str, float], sources: list[str]) -> dict[str, float]:
    """Weights over exactly ``sources`` (missing ones 0), summing to 1, rounded for readable tables."""
    unknown = sorted(set(mixture) - set(sources))
    if unknown:
        raise ValueError(f"sweep.mixtures names sources not in sweep.sources: {unknown}")
    weights = np.asarray([max(0.0, float(mixture.get(s, 0.0))) for s in sources])
    if weights.sum() <= 0:
        raise ValueError(f"mixture {mixture} has no positive weight")
    weights = weights / weights.sum()
    return {s: round(float(w), 6) for s, w in zip(sources, weights)}


def dirichlet_mixtures(sources: list[str], n: int, alpha: float, rng: np.random.Generator) -> list[dict[str, float]]:
    draws = rng.dirichlet([alpha] * len(sources), size=n)
    return [normalise(dict(zip(sources, row)), sources) for row in draws]


def grid_mixtures(sources: list[str], steps: int) -> list[dict[str, float]]:
    """Every composition of ``steps`` into len(sources) parts: C(steps + k - 1, k - 1) mixtures."""
    out = []
    for parts in itertools.product(range(steps + 1), repeat=len(sources)):
        if sum(parts) == steps:
            out.append(normalise({s: p / steps for s, p in zip(sources, parts)}, sources))
    return out


def _dimensions(sweep: SweepConfig) -> dict[str, list[Any]]:
    dims: dict[str, list[Any]] = {}
    if sweep.passes:
        dims["passes"] = list(sweep.passes)
    if sweep.lr:
        dims["lr"] = list(sweep.lr)
    for path, choices in sweep.extra_space.items():
        if not choices:
            raise ValueError(f"sweep.extra_space.{path}: give at least one choice")
        dims[f"extra:{path}"] = list(choices)
    return dims


def _point(index: int, mixture: dict[str, float], choice: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"p{index:03d}",
        "mixture": mixture,
        "passes": choice.get("passes"),
        "lr": choice.get("lr"),
        "extra": {k[len("extra:") :]: v for k, v in choice.items() if k.startswith("extra:")},
    }


def build_points(sweep: SweepConfig, seed: int) -> list[dict[str, Any]]:
    """The trials of the sweep, in order (dirichlet: random choices per dimension; grid: full product)."""
    if not sweep.sources:
        raise ValueError("sweep.sources is empty: name the token sources whose mixture is swept")
    rng = np.random.default_rng(seed)
    dims = _dimensions(sweep)
    explicit = [normalise(m, sweep.sources) for m in sweep.mixtures]
    if sweep.sampler == "grid":
        mixtures = grid_mixtures(sweep.sources, sweep.grid_steps) + explicit
        combos = [dict(zip(dims, values)) for values in itertools.product(*dims.values())] or [{}]
        pairs = [(m, c) for m in mixtures for c in combos]
    else:
        mixtures = dirichlet_mixtures(sweep.sources, sweep.num_trials, sweep.dirichlet_alpha, rng) + explicit
        pairs = [
            (m, {name: choices[int(rng.integers(len(choices)))] for name, choices in dims.items()}) for m in mixtures
        ]
    return [_point(i, m, c) for i, (m, c) in enumerate(pairs)]


def point_overrides(point: dict[str, Any], phase: str = "pretrain") -> dict[str, Any]:
    """Dotted path -> value for everything the point sets except the step budget (see trial_steps)."""
    out: dict[str, Any] = {f"{phase}.mixture": dict(point["mixture"])}
    if point.get("lr") is not None:
        out[f"{phase}.lr"] = point["lr"]
    out.update(point.get("extra") or {})
    return out


def trial_steps(point: dict[str, Any], sweep: SweepConfig, sequences: dict[str, int], global_batch: int) -> int:
    """Optimizer steps of a trial: ``max_steps``, or passes x the mixture's training sequences / batch."""
    if point.get("passes") is None:
        return sweep.max_steps
    rows = sum(n for name, n in sequences.items() if point["mixture"].get(name, 0) > 0)
    steps = int(np.ceil(float(point["passes"]) * rows / global_batch))
    return int(min(max(steps, 1), sweep.max_steps_cap))


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1, "a.c": 2} -> {"a": {"b": 1, "c": 2}} (the shape of a --config overlay)."""
    tree: dict[str, Any] = {}
    for path, value in dotted.items():
        set_path(tree, path, value)
    return tree


def space_hash(points: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    """Identity of a sweep: a resume is refused when the points or the trial settings changed."""
    blob = json.dumps({"points": points, "extra": extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
