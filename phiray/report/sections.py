"""The sections of `phiray report`, each built from the run directory's manifests and outputs."""

from __future__ import annotations

from typing import Any

from phiray.formatting import format_pairs
from phiray.pipeline import STATUS_HEADER, run_config, status_rows
from phiray.report.render import Section, bars_png, curves_png, fmt, histogram_png, manifests
from phiray.report.thesis import thesis
from phiray.report.tracking import tracking
from phiray.rundir import Manifest, RunDir
from phiray.stages import STAGES

TRAINING = ("pretrain", "grow", "finetune", "control")


def collect(rd: RunDir) -> tuple[str, list[Section]]:
    cfg = run_config(rd)
    ms = manifests(rd, [s.name for s in STAGES])
    title = f"phiray run '{cfg.run.name}' (preset {cfg.run.preset or 'custom'})"
    overview = Section("Stages").p(
        "Each stage read its inputs from the run directory and recorded a manifest. 'done' means the manifest "
        "matches the current config; a re-run of `phiray run` skips those stages."
    )
    overview.table(STATUS_HEADER, status_rows(STAGES, cfg, rd, reasons=False))
    total = sum(m.wall_time_s for m in ms.values())
    overview.p(f"Total stage time: {total / 60:.1f} min.")
    sections = [
        overview,
        filtering(rd, ms, cfg),
        synthesis(rd, ms),
        decontamination(ms),
        similarity(ms),
        training(ms),
        tracking(rd),
        thesis(ms, cfg),
        evaluation(ms),
    ]
    return title, sections


# ----------------------------------------------------------------------------- data helpers


def _read(rd: RunDir, rel: str, columns: list[str]) -> list[dict[str, Any]]:
    """Rows of a Parquet dataset in the run dir (only the columns asked for; [] when absent)."""
    return rd.read_table(rel, columns=columns).to_pylist()


def _excerpt(text: str, lines: int = 18) -> str:
    parts = (text or "").splitlines()
    return "\n".join(parts[:lines]) + ("\n…" if len(parts) > lines else "")


def _missing(section: Section, stage: str) -> Section:
    return section.p(f"Stage {stage} has not run in this run directory.")


# ----------------------------------------------------------------------------- sections


def filtering(rd: RunDir, ms: dict[str, Manifest], cfg) -> Section:
    sec = Section("Quality filtering")
    if "filter" not in ms:
        return _missing(sec, "filter")
    counts = []
    for name in ("ingest", "dedup", "decontaminate", "filter"):
        if name in ms:
            counts.append([name, format_pairs(ms[name].rows)])
    sec.table(["stage", "rows"], counts)
    if "classify" in ms:
        held = ms["classify"].metrics.get("heldout", {})
        shape = ms["classify"].metrics.get("forest", {})
        sec.p(
            f"Quality model ({shape.get('model', 'forest')} on {shape.get('features', 'embedding')} features, target "
            f"{shape.get('target', 'label')}) on classify's held-out split of the annotated sample; the binary "
            f"figures are at the cut filter uses ({held.get('cut_from', '0.5')}). Figures on labels no tuning saw: "
            "`benchmarks/filter_quality.py --split test` on phiray/data/labels/code_labels.json (RESULTS.md)."
        )
        sec.table(
            ["ROC-AUC", "Spearman", "MAE", "cut", "precision", "recall", "F1", "train", "test"],
            [
                [
                    held.get(k)
                    for k in ("roc_auc", "spearman", "mae", "cut", "precision", "recall", "f1", "n_train", "n_test")
                ]
            ],
        )
    kept = _read(rd, "filter/documents", ["score", "text", "path"])
    rejected = _read(rd, "filter/rejected", ["score", "text", "path"])
    cut = ms["filter"].metrics.get("cutoff")
    sec.png(
        "score_histogram",
        histogram_png([r["score"] for r in kept], [r["score"] for r in rejected], cut),
        "quality-score histogram with threshold",
    )
    sec.p(f"Kept {len(kept)} of {len(kept) + len(rejected)} documents at score >= {fmt(cut)}.")
    _filter_quality(sec, ms["filter"].metrics, kept, rejected)
    _active_learning(sec, rd, ms.get("annotate"))
    for label, rows, best in (("kept (highest scores)", kept, True), ("rejected (lowest scores)", rejected, False)):
        for row in sorted(rows, key=lambda r: r["score"], reverse=best)[:2]:
            sec.code(f"{label}: {row.get('path')} score={fmt(row['score'])}", _excerpt(row["text"]))
    return sec


def _short_path(path: str | None) -> str:
    """A stdlib path without the interpreter's prefix (``.../lib/python3.11/json/decoder.py`` -> ``json/decoder.py``)."""
    parts = (path or "").split("/")
    for i, part in enumerate(parts):
        if part.startswith("python3") and i + 1 < len(parts):
            return "/".join(parts[i + 1 :])
    return path or ""


def _filter_quality(sec: Section, metrics: dict, kept: list[dict], rejected: list[dict]) -> None:
    """How the cut was chosen, what it implies on the held-out split, the validation set, the extremes."""
    at = metrics.get("heldout_at_cutoff") or {}
    if metrics.get("selection"):
        sec.p(
            f"Cut chosen by {metrics['selection']}; on classify's held-out split ({at.get('n')} labelled "
            f"documents) it implies precision {fmt(at.get('precision'))}, recall {fmt(at.get('recall'))}, "
            f"keeping {fmt(at.get('kept_fraction'))} of them."
        )
    val = metrics.get("validation") or {}
    if "all" in val:
        sec.p(
            "Independent validation set (phiray/data/validation_labels.json: stdlib files labelled by what they "
            "are, not by the annotator; 'unseen' leaves out files the classifier was trained on):"
        )
        sec.table(
            ["subset", "files (high/low)", "ROC-AUC", "low class kept", "high class kept"],
            [
                [
                    name,
                    f"{v['n']} ({v['n_high']}/{v['n_low']})",
                    v.get("roc_auc"),
                    v.get("low_kept"),
                    v.get("high_kept"),
                ]
                for name in ("all", "dev", "test", "unseen")
                if (v := val.get(name))
            ],
        )
        if val.get("low_kept_paths"):
            sec.p("Low-class validation files kept: " + ", ".join(val["low_kept_paths"][:20]) + ".")
    elif val.get("skipped"):
        sec.p(f"Validation set not scored: {val['skipped']}.")
    ranked = sorted(kept + rejected, key=lambda r: r["score"], reverse=True)
    if ranked:
        sec.table(
            ["top 10 (score)", "bottom 10 (score)"],
            [
                [
                    f"{_short_path(hi.get('path'))} ({fmt(hi['score'])})",
                    f"{_short_path(lo.get('path'))} ({fmt(lo['score'])})",
                ]
                for hi, lo in zip(ranked[:10], ranked[::-1][:10])
            ],
        )


def synthesis(rd: RunDir, ms: dict[str, Manifest]) -> Section:
    sec = Section("Synthetic textbooks and exercises")
    if "synthesize" not in ms:
        return _missing(sec, "synthesize")
    m = ms["synthesize"]
    sec.table(["counter", "value"], [[k, v] for k, v in m.rows.items()])
    div = m.metrics.get("diversity", {})
    for kind, report in div.items() if isinstance(div, dict) else []:
        if isinstance(report, dict) and "duplicate_rate" in report:
            sec.p(
                f"Diversity of {kind}: {report.get('samples')} samples, duplicate rate "
                f"{fmt(report.get('duplicate_rate'))} over {report.get('cells')} (topic, audience, style) cells "
                f"({report.get('cells_with_duplicates')} with duplicates); distinct 4-gram ratio "
                f"{fmt(report.get('distinct_4gram_ratio'))}, distinct 2-gram ratio "
                f"{fmt(report.get('distinct_2gram_ratio'))}."
            )
    if "duplicate_rate" in div:
        sec.p(
            f"Duplicate rate {fmt(div['duplicate_rate'])}; distinct 4-gram ratio {fmt(div.get('distinct_4gram_ratio'))}."
        )
    failures = m.metrics.get("failures_by_reason") or {}
    if failures:
        sec.table(["dropped because", "count"], [[k, v] for k, v in failures.items()])
    for rel, label in (("synthesize/textbooks", "textbook"), ("synthesize/exercises", "exercise")):
        rows = _read(rd, rel, ["text", "topic", "audience", "style"])[:1]
        for row in rows:
            sec.code(
                f"a {label}: topic={row.get('topic')} audience={row.get('audience')} style={row.get('style')}",
                _excerpt(row["text"], 24),
            )
    return sec


def decontamination(ms: dict[str, Manifest]) -> Section:
    """Every source that trains a model, screened with one n-gram rule against HumanEval/MBPP; the test
    split screened against every training source."""
    sec = Section("Decontamination and held-out splits")
    if "decontaminate" not in ms and "synthesize" not in ms:
        return _missing(sec, "decontaminate")
    rows = []
    if "decontaminate" in ms:
        d = ms["decontaminate"]
        rows.append(
            [
                "corpus (decontaminate/documents)",
                d.rows.get("in"),
                d.rows.get("contaminated"),
                "",
                "",
                ", ".join(sorted(d.metrics.get("matched_tasks", {}))[:6]),
            ]
        )
    screen = ms["synthesize"].metrics.get("decontamination", {}) if "synthesize" in ms else {}
    for source, c in screen.get("sources", {}).items():
        rows.append(
            [
                f"synthesize/{source}",
                c["checked"],
                c["contaminated"],
                c["test_overlap"],
                c["corpus_overlap"],
                ", ".join(sorted(c["matched_tasks"])[:6]),
            ]
        )
    sec.table(
        [
            "source",
            "checked",
            "benchmark n-gram match (dropped)",
            "shares an n-gram with the test split (dropped)",
            "test exercise found in the corpus (dropped)",
            "matched tasks (first 6)",
        ],
        rows,
    )
    n = screen.get("ngram") or (ms["decontaminate"].metrics.get("ngram") if "decontaminate" in ms else None)
    benchmarks = screen.get("benchmark_tasks") or (
        ms["decontaminate"].metrics.get("benchmark_tasks") if "decontaminate" in ms else {}
    )
    sec.p(
        f"Rule: a shared normalised {n}-token window with a benchmark prompt + solution "
        f"({', '.join(f'{k}: {v} tasks' for k, v in (benchmarks or {}).items())}). The test split "
        "(synthesize/heldout: whole concept families) is what evaluate scores once; sweeps select on "
        "synthesize/validation (held-out instances of the train families). No test solution shares an "
        "n-gram with a textbook, a train or validation exercise, or the corpus "
        f"(corpus documents checked: {screen.get('corpus', {}).get('documents', 0)})."
    )
    return sec


def similarity(ms: dict[str, Manifest]) -> Section:
    sec = Section("phi-1 §5: HumanEval vs the training exercises")
    if "similarity" not in ms:
        return _missing(sec, "similarity")
    m = ms["similarity"]
    sec.p(
        f"For each of {m.rows.get('problems')} HumanEval problems, the {m.metrics.get('top_k')} nearest of "
        f"{m.rows.get('exercises')} train exercises by L2 distance of normalised embeddings "
        f"({m.metrics.get('embedder')}; median distance to the nearest "
        f"{fmt(m.metrics.get('median_embedding_distance'))}), then the AST match rate "
        "tau = 1 - tree edit distance / max(node counts) (Zhang-Shasha, node types). "
        f"Pairs compared: {m.rows.get('pairs')}; trees skipped as too large: {m.rows.get('skipped_large')}."
    )
    sec.table(
        ["tau >=", "HumanEval problems with a train exercise at least that close"],
        [[t["tau"], f"{t['problems']} / {t['of']}"] for t in m.metrics.get("tau_table", [])],
    )
    closest = [
        [p["problem"], p.get("nearest_by_tau"), p.get("best_tau"), p["nearest_by_embedding"], p["embedding_distance"]]
        for p in m.metrics.get("closest", [])
    ]
    if closest:
        sec.table(["problem", "closest by tau", "tau", "closest by embedding", "distance"], closest)
    if m.metrics.get("prune_tau") is not None:
        sec.p(
            f"Pruned {m.rows.get('pruned')} train exercises at tau >= {m.metrics['prune_tau']} "
            "(similarity/exercises keeps the rest)."
        )
    return sec


def _val_points(m: Manifest, key: str = "val_loss") -> list[tuple[float, float]]:
    return [(r["step"], r[key]) for r in m.metrics.get("curve", {}).get("val", []) if r.get(key) is not None]


def _train_points(m: Manifest) -> list[tuple[float, float]]:
    return [(r["step"], r["loss"]) for r in m.metrics.get("curve", {}).get("train", []) if r.get("loss") is not None]


def training(ms: dict[str, Manifest]) -> Section:
    sec = Section("Training: pretrain, grow, finetune")
    if "pretrain" not in ms:
        return _missing(sec, "pretrain")
    for name in ("pretrain", "finetune"):
        if name in ms:
            sec.png(
                f"{name}_loss",
                curves_png(
                    {"train loss": _train_points(ms[name]), "validation loss": _val_points(ms[name])}, "loss", f"{name}"
                ),
                f"{name} loss curve",
            )
    if "grow" in ms:
        grow = ms["grow"]
        offset = ms["pretrain"].rows.get("steps", 0)
        sec.png(
            "grown_vs_scratch",
            curves_png(
                {
                    "small model from scratch (pretrain)": _val_points(ms["pretrain"]),
                    "grown model, continued": [(s + offset, v) for s, v in _val_points(grow)],
                },
                "validation loss",
                "grown vs scratch",
            ),
            "grown vs scratch validation loss",
        )
        step0 = {k[len("step0_") :]: v for k, v in grow.headline.items() if k.startswith("step0_") and v is not None}
        if step0:
            sec.png(
                "grow_step0",
                bars_png(
                    list(step0),
                    list(step0.values()),
                    "validation loss at step 0",
                    "weight reuse: grown vs small vs fresh init",
                ),
                "step-0 losses",
            )
            sec.table(["model", "validation loss at step 0"], [[k, v] for k, v in step0.items()])
        layer_map = grow.metrics.get("growth", {}).get("layer_map")
        if layer_map:
            sec.p(f"Layer map (new layer -> small layer): {layer_map}")
    return sec


def evaluation(ms: dict[str, Manifest]) -> Section:
    sec = Section("Evaluation (pass@k in the sandbox)")
    if "evaluate" not in ms:
        return _missing(sec, "evaluate")
    m = ms["evaluate"]
    rows = [key.split("/") + [value] for key, value in sorted(m.metrics.items()) if key.count("/") == 2]
    sec.table(["model", "benchmark", "metric", "value"], rows)
    sec.p(
        "HumanEval pass@1 of a tiny CPU model is expected to be ~0: the benchmark is wired end to end "
        "(generation, sandboxed execution, pass@k), not a claim about quality at this scale."
    )
    return sec


def _active_learning(sec: Section, rd: RunDir, annotate: Manifest | None) -> None:
    """The labelling rounds of annotate.strategy=active, and the label-efficiency curve when
    ``benchmarks/active_learning.py --run-dir RUN`` left one in ``RUN/benchmarks/active_learning.json``."""
    rounds = (annotate.metrics.get("rounds") or []) if annotate else []
    if rounds:
        sec.p(
            "Active annotation: a random seed set (round 0), then rounds of the documents the forest was least "
            "sure of, spread over k-means clusters of their embeddings."
        )
        sec.table(
            ["round", "labelled", "positives", "unparsed", "pool"],
            [[r.get("round"), r.get("labelled"), r.get("positives"), r.get("unparsed"), r.get("pool")] for r in rounds],
        )
    if rd.exists("benchmarks", "active_learning.json"):
        bench = rd.read_json("benchmarks/active_learning.json")
        labels = bench["labels"]
        sec.png(
            "active_learning",
            curves_png(
                {k: list(zip(labels, bench[k])) for k in ("random", "active")},
                "held-out ROC-AUC",
                "label efficiency (x: labels)",
            ),
            "held-out AUC vs labels, active vs random",
        )
        ratio = bench.get("ratio")
        reached = f"with {fmt(ratio)} of its labels" if ratio is not None else "not at all within the budget"
        sec.p(
            f"Label efficiency ({bench['args'].get('seeds')} seeds, {bench['args'].get('embed')} embeddings): "
            f"active learning reaches random sampling's final AUC ({fmt(bench['random'][-1])} at {labels[-1]} "
            f"labels) {reached} (goal <= 0.6)."
        )
