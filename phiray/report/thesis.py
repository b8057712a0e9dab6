"""The report's thesis section: phiray's data vs the unfiltered control, over seeds with the spread.

Built from the ``thesis`` stage's manifest (:mod:`phiray.stages.thesis`); a run without that stage gets
the one-seed comparison from the pretrain/control/evaluate manifests, saying that no spread is measured.
"""

from __future__ import annotations

from typing import Any

from phiray.report.render import Section, bars_png, fmt
from phiray.rundir import Manifest

LABELS = {
    "pretrain": "phiray (pretrain)",
    "control": "control (unfiltered)",
    "finetune": "phiray finetuned",
    "no_textbooks": "no textbooks (filtered code)",
    "no_filter": "no filter (unfiltered + textbooks)",
    "pretrain_ft": "phiray + finetune",
    "control_ft": "control + finetune",
    "no_textbooks_ft": "no textbooks + finetune",
    "no_filter_ft": "no filter + finetune",
    "pretrain_ft_unpruned": "phiray + finetune, no §5 pruning",
}
INTRO = (
    "Two models of the same size and token budget: 'phiray' pretrained on filtered code + synthetic textbooks, "
    "'control' on the unfiltered deduplicated corpus. Lower validation loss and higher pass@1 are better; the "
    "downstream measure is pass@1 on 'validation' (held-out instances of the train concept families) and on "
    "'exercises' (the test split: families no training or selection input saw). A tiny CPU model is not "
    "phi-1: the gap shows the data effect, not phi-1's numbers."
)


def thesis(ms: dict[str, Manifest], cfg) -> Section:
    sec = Section("The thesis at toy scale: phiray data vs the unfiltered corpus")
    if "control" not in ms or "pretrain" not in ms:
        return sec.p(f"Stage {'control' if 'control' not in ms else 'pretrain'} has not run in this run directory.")
    sec.p(INTRO)
    if "thesis" in ms and not ms["thesis"].headline.get("skipped"):
        over_seeds(sec, ms["thesis"])
    else:
        one_seed(sec, ms, cfg)
    ours, control = _final_val(ms.get("pretrain")), _final_val(ms.get("control"))
    labels, values = [], []
    for key in ("val_loss/textbooks", "val_loss/exercises"):
        if key in ours and key in control:
            labels += [f"phiray {key[9:]}", f"control {key[9:]}"]
            values += [ours[key], control[key]]
    if labels:
        sec.png(
            "thesis_val_loss",
            bars_png(labels, values, "validation loss", "held-out textbooks / exercises"),
            "control vs phiray validation loss",
        )
    return sec


def _pm(row: dict[str, Any]) -> str:
    return "–" if row.get("mean") is None else f"{row['mean']:.4g} ± {row['std']:.3g}"


def _range(row: dict[str, Any]) -> str:
    return "–" if row.get("min") is None else f"{row['min']:.4g} – {row['max']:.4g}"


def over_seeds(sec: Section, m: Manifest) -> None:
    """The thesis stage's table: every metric per seed, its mean ± sample std and min–max, then how often
    phiray's models beat the control and the ablations, the budgets, and the finetuned model against the goal."""
    seeds = [str(s) for s in m.metrics.get("seeds", [])]
    rows = m.metrics.get("table", [])
    tasks = m.metrics.get("tasks", {})
    sec.p(
        f"Over {len(seeds)} training seeds (run.seed's models are the pipeline's; the others re-trained the "
        "phases with the same settings and data, only the seed changed: initialisation, data order, dropout). "
        f"Tasks scored: {', '.join(f'{b} {n}' for b, n in tasks.items())}; spread = sample standard deviation "
        "and min – max over the seeds."
    )
    sec.table(
        ["metric", "model", *[f"seed {s}" for s in seeds], "mean ± std", "min – max"],
        [
            [
                r["metric"],
                LABELS.get(r["model"], r["model"]),
                *[fmt(r["per_seed"].get(s)) for s in seeds],
                _pm(r),
                _range(r),
            ]
            for r in rows
        ],
    )
    comparisons = m.metrics.get("comparisons", [])
    if comparisons:
        sec.table(
            [
                "metric",
                "phiray",
                "vs",
                "seeds where phiray's data is better",
                "ties",
                "mean gap (phiray better > 0)",
                "paired bootstrap over (seed, task): gap [95% CI], p",
            ],
            [
                [
                    c["metric"],
                    LABELS.get(c.get("ours", "pretrain"), c.get("ours")),
                    LABELS.get(c.get("theirs", "control"), c.get("theirs")),
                    f"{c['phiray_better']} of {c['of']}",
                    c["ties"],
                    _pm(c["gap"]),
                    _bootstrap(c.get("bootstrap")),
                ]
                for c in comparisons
            ],
        )
        passes = [c for c in comparisons if "pass@" in c["metric"]]
        if passes and all(c["ties"] == c["of"] for c in passes):
            sec.p(
                "Downstream, pretrain and control tie on every seed (both solve the same share, usually none): "
                "at this budget the comparison rests on validation loss."
            )
    budget = m.metrics.get("budget", {})
    if "pretrain" in budget and "control" in budget:
        a, b = budget["pretrain"], budget["control"]
        same = all(a.get(x) == b.get(x) for x in ("steps", "tokens", "params_non_embedding"))
        sec.p(
            ("Equal budget" if same else "UNEQUAL budget")
            + f": pretrain {a.get('steps')} steps, {fmt(a.get('tokens'))} "
            f"tokens, {fmt(a.get('params_non_embedding'))} non-embedding parameters; control {b.get('steps')} steps, "
            f"{fmt(b.get('tokens'))} tokens, {fmt(b.get('params_non_embedding'))} parameters."
        )
    extra = [
        f"seed {s}: " + ", ".join(f"{p} {round(f.get('wall_time_s') or 0)} s" for p, f in phases.items())
        for s, phases in m.metrics.get("training", {}).items()
        if s != (seeds or [None])[0]
    ]
    if extra:
        sec.p("Training wall time of the re-trained seeds (the cost of the spread): " + "; ".join(extra) + ".")
    _goal(sec, m.metrics.get("goal") or {})


def _bootstrap(b: dict[str, Any] | None) -> str:
    if not b or b.get("mean") is None:
        return "–"
    if b.get("ci_low") is None:
        return f"{b['mean']:+.3f} ({b['pairs']} pairs)"
    return f"{b['mean']:+.3f} [{b['ci_low']:+.3f}, {b['ci_high']:+.3f}], p={b['p_value']:.3g} ({b['pairs']} pairs)"


def _goal(sec: Section, goal: dict[str, Any]) -> None:
    if goal.get("mean") is None:
        sec.p("The finetuned model was not scored on the validation split.")
        return
    over = f"mean over {goal['seeds']} seeds" if goal.get("seeds", 1) > 1 else "one seed"
    if goal.get("met"):
        sec.p(
            f"The finetuned model solves {goal['mean']:.1%} of the validation split ({over}): the goal of >= "
            f"{goal['target']:.0%} is met."
        )
    else:
        sec.p(
            f"The finetuned model solves {goal['mean']:.1%} of the validation split ({over}): below the goal of "
            f">= {goal['target']:.0%}; this run's budget does not get there."
        )


def one_seed(sec: Section, ms: dict[str, Manifest], cfg) -> None:
    """Without the thesis stage: run.seed's pretrain vs control, no spread."""
    ours, control = _final_val(ms.get("pretrain")), _final_val(ms.get("control"))
    ev = ms.get("evaluate").metrics if "evaluate" in ms else {}
    rows = [[key, ours.get(key), control.get(key)] for key in sorted(set(ours) | set(control))]
    k = cfg.evaluate.k[0]
    passes = []
    for bench in cfg.evaluate.benchmarks:
        pair = [ev.get(f"pretrain/{bench}/pass@{k}"), ev.get(f"control/{bench}/pass@{k}")]
        rows.append([f"{bench} pass@{k}", *pair])
        passes += [v for v in pair if v is not None]
    sec.table(["metric", "phiray (pretrain)", "control (unfiltered)"], rows)
    if not passes or not any(passes):
        sec.p(
            f"Downstream, this run shows nothing: every pass@{k} of the two pretrained models is 0 (or was not "
            "measured), so the comparison rests on validation loss alone. One seed (run.seed = "
            f"{cfg.run.seed}); no spread over seeds is measured (the thesis stage has not run)."
        )
    else:
        sec.p(
            f"One seed (run.seed = {cfg.run.seed}): the spread over seeds is not measured by this run "
            "(the thesis stage has not run)."
        )


def _final_val(m: Manifest | None) -> dict[str, float]:
    if m is None:
        return {}
    vals = m.metrics.get("curve", {}).get("val", [])
    return {k: v for k, v in (vals[-1] if vals else {}).items() if k.startswith("val_loss")}
