"""What a sweep leaves behind: the results table (Parquet + CSV), a plot, and ``best.yaml``.

One table row per trial: its point (weights ``w/<source>``, ``lr``, ``passes``, ``x/<dotted path>``), its
``status`` (``completed`` | ``stopped_early`` by ASHA | ``error``), the steps it reached of its budget, the
last reported metrics (objective, ``val_loss/<source>``, ``pass@1``, ``sequences/<source>``) and its attempt
records (``attempts``, ``steps_trained`` summed over attempts: a resumed sweep shows no repeated work).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import yaml

from phiray.rundir import RunDir
from phiray.tune.space import nested, point_overrides
from phiray.tune.trainable import read_attempts

SCALARS = (bool, int, float, str, type(None))
STYLES = {
    "completed": dict(marker="o", color="C0"),
    "stopped_early": dict(marker="o", facecolors="none", edgecolors="C0"),
    "error": dict(marker="x", color="C3"),
}


def _cell(value: Any) -> Any:
    return value if isinstance(value, SCALARS) else json.dumps(value, sort_keys=True)


def trial_row(result, point: dict[str, Any], budget: int, objective: str, rd: RunDir) -> dict[str, Any]:
    """A table row from one ``ray.tune.Result``."""
    metrics = dict(result.metrics or {})
    steps = int(metrics.get("step", 0) or 0)
    trial_id = metrics.get("trial_id") or (result.path or "").rstrip("/").rsplit("_", 1)[-1]
    if result.error is not None:
        status = "error"
    else:
        status = "completed" if steps >= budget else "stopped_early"
    attempts = read_attempts(rd, trial_id) if trial_id else []
    row: dict[str, Any] = {
        "trial_id": trial_id,
        "point_id": point["id"],
        "status": status,
        "stopped_early": status == "stopped_early",
        "steps": steps,
        "max_steps": budget,
        "objective": metrics.get(objective),
        **{f"w/{name}": weight for name, weight in point["mixture"].items()},
        "lr": point.get("lr"),
        "passes": point.get("passes"),
        **{f"x/{path}": _cell(value) for path, value in (point.get("extra") or {}).items()},
    }
    for key in sorted(metrics):
        if key.startswith(("val_loss", "pass@", "sequences/")) or key in ("loss", "time_total_s"):
            row[key] = metrics[key]
    row.update(
        attempts=len(attempts),
        steps_trained=sum(a.get("steps_trained", 0) for a in attempts),
        replays=sum(1 for a in attempts if a.get("replayed")),
        error=str(result.error).splitlines()[0][:300] if result.error is not None else None,
    )
    return row


def _usable(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def best_row(rows: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    """Best objective among trials that ran their whole budget (ASHA's survivors), else among all."""
    for pool in ([r for r in rows if r["status"] == "completed"], rows):
        scored = [r for r in pool if _usable(r["objective"])]
        if scored:
            return (min if mode == "min" else max)(scored, key=lambda r: r["objective"])
    return None


def write_table(rd: RunDir, rows: list[dict[str, Any]], stem: str = "sweep/results") -> list[str]:
    """``<stem>.parquet`` and ``<stem>.csv`` (one row per trial, columns in first-seen order)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    columns: list[str] = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    rd.write_bytes(f"{stem}.parquet", buffer.getvalue())
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    rd.write_bytes(f"{stem}.csv", buffer.getvalue())
    return [f"{stem}.parquet", f"{stem}.csv"]


def _ternary_xy(w: list[float]) -> tuple[float, float]:
    """Barycentric -> plane: vertices (0, 0), (1, 0), (0.5, sqrt(3)/2) for sources 0, 1, 2."""
    return w[1] + 0.5 * w[2], w[2] * math.sqrt(3) / 2


def plot(
    rd: RunDir,
    rows: list[dict[str, Any]],
    sources: list[str],
    objective: str,
    best: dict[str, Any] | None,
    path: str = "sweep/plot.png",
) -> str:
    """Objective vs each source's weight (completed: filled, stopped early: hollow), + a ternary panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if _usable(r["objective"])]
    panels = len(sources) + (1 if len(sources) == 3 else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.6), squeeze=False)
    for ax, source in zip(axes[0], sources):
        for status, style in STYLES.items():
            pts = [r for r in scored if r["status"] == status]
            if pts:
                ax.scatter([r[f"w/{source}"] for r in pts], [r["objective"] for r in pts], label=status, **style)
        if best is not None and _usable(best["objective"]):
            ax.scatter([best[f"w/{source}"]], [best["objective"]], marker="*", s=200, color="C3", label="best")
        ax.set_xlabel(f"weight of {source}")
        ax.set_ylabel(objective)
        ax.set_xlim(-0.05, 1.05)
    axes[0][0].legend(fontsize=7)
    if len(sources) == 3:
        ax = axes[0][-1]
        ax.plot([0, 1, 0.5, 0], [0, 0, math.sqrt(3) / 2, 0], color="grey", lw=0.8)
        for (x, y), name in zip([(0, 0), (1, 0), (0.5, math.sqrt(3) / 2)], sources):
            ax.annotate(name, (x, y), ha="center", va="top" if y == 0 else "bottom", fontsize=8)
        if scored:
            xy = [_ternary_xy([r[f"w/{s}"] for s in sources]) for r in scored]
            points = ax.scatter(
                [p[0] for p in xy],
                [p[1] for p in xy],
                c=[r["objective"] for r in scored],
                cmap="viridis",
                edgecolors="black",
            )
            fig.colorbar(points, ax=ax, label=objective)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle(f"sweep: {objective} vs mixture ({len(rows)} trials)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    rd.write_bytes(path, buffer.getvalue())
    return path


def best_overlay(
    best: dict[str, Any], point: dict[str, Any], objective: str, mode: str, pretrain_steps: int | None
) -> str:
    """``best.yaml``: the winning point's settings as a --config overlay for `phiray pretrain`."""
    dotted = point_overrides(point)
    if pretrain_steps is not None:
        dotted["pretrain.max_steps"] = pretrain_steps
    header = (
        f"# phiray sweep winner: trial {best['trial_id']} ({point['id']}), {objective} = {best['objective']} "
        f"({mode}) after {best['steps']} proxy steps.\n"
        f"# Use: phiray pretrain --run-dir RUN --config best.yaml  (the proxy model overrides are not included)\n"
    )
    return header + yaml.safe_dump(nested(dotted), sort_keys=True)
