"""Model cards: a README.md in every final model directory, so a model dir says what it is on its own.

A card records what a reader of a model directory needs before trusting it: the data it was trained on
(sources, mixture weights, sequences and tokens seen), the architecture and phase config, the
decontamination the corpus went through, the evaluation numbers once ``evaluate`` has run, and the
lineage (run directory, stage, config hash, initial weights). The facts are kept beside the card as
``model_card.json`` so a later stage (``evaluate``) adds its numbers and re-renders the card.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from phiray.formatting import format_value

CARD_FILE, CARD_DATA = "README.md", "model_card.json"


def training_facts(
    info: dict[str, Any], spec: dict[str, Any], *, config_hash: str | None, decontamination: dict[str, Any] | None
) -> dict[str, Any]:
    """The card's facts from a training phase's info (``phiray_training.json``) and its worker spec."""
    seq_len = int(spec.get("seq_len") or 0)
    total_tokens = int(info.get("steps") or 0) * int((spec.get("phase") or {}).get("global_batch_size") or 0) * seq_len
    # Per-source counts are rank 0's draws (every rank samples the same mixture): shares, scaled to the total.
    seen = dict(info.get("history", {}).get("sources", {}))
    drawn = sum(seen.values()) or 1
    return {
        "stage": spec["stage"],
        "run_dir": spec.get("run_root"),
        "config_hash": config_hash,
        "init_from": spec.get("init_from"),
        "seed": spec.get("seed"),
        "model": spec.get("model"),
        "phase": spec.get("phase"),
        "data": {
            "mixture": spec.get("mixture"),
            "sequence_length": seq_len,
            "tokens_total": total_tokens,
            "tokens_seen": {name: round(total_tokens * n / drawn) for name, n in seen.items()},
            "missing_sources": spec.get("missing_sources", []),
        },
        "training": {
            "steps": info.get("steps"),
            "strategy": info.get("strategy"),
            "precision": info.get("precision"),
            "world_size": info.get("world_size"),
            "n_params_non_embedding": info.get("n_params_non_embedding"),
            "summary": info.get("summary", {}),
        },
        "decontamination": decontamination,
        "evaluation": {},
    }


def render(facts: dict[str, Any]) -> str:
    """The Markdown card for ``facts``."""
    model, data, training = facts.get("model") or {}, facts.get("data") or {}, facts.get("training") or {}
    summary = training.get("summary") or {}
    lines = [
        f"# phiray model: {facts.get('stage')}",
        "",
        "A phi decoder (`PhiForCausalLM`) trained by phiray on phi-1's recipe "
        '("Textbooks Are All You Need"). Load it with `AutoModelForCausalLM.from_pretrained(<this dir>)`.',
        "",
        "## Model",
        f"- layers {model.get('n_layer')}, d_model {model.get('d_model')}, heads {model.get('n_head')}, "
        f"rotary dim {model.get('rotary_dim')}, context {model.get('n_ctx')}, vocabulary {model.get('vocab_size')}",
        f"- non-embedding parameters: {_fmt(training.get('n_params_non_embedding'))}",
        "",
        "## Training data",
        f"{_fmt(data.get('tokens_total'))} tokens in all (steps x global batch x sequence length "
        f"{_fmt(data.get('sequence_length'))}); per source, rank 0's draws scaled to that total:",
        "",
        "| source | mixture weight | tokens seen |",
        "|---|---|---|",
    ]
    mixture, tokens = data.get("mixture") or {}, data.get("tokens_seen") or {}
    for name in sorted(set(mixture) | set(tokens)):
        lines.append(f"| {name} | {_fmt(mixture.get(name))} | {_fmt(tokens.get(name))} |")
    if data.get("missing_sources"):
        lines.append(f"\nSources named in the config but absent from the run: {', '.join(data['missing_sources'])}.")
    lines += [
        "",
        "## Training",
        f"- steps {_fmt(training.get('steps'))}, {training.get('strategy')}, {training.get('precision')}, "
        f"{_fmt(training.get('world_size'))} workers",
        f"- validation loss {_fmt(summary.get('val_loss_start'))} -> {_fmt(summary.get('val_loss_final'))}, "
        f"tokens/s {_fmt(summary.get('tokens_per_s'))}, MFU {_fmt(summary.get('mfu'))}",
        f"- phase config: `{json.dumps(facts.get('phase'), sort_keys=True)}`",
        "",
        "## Decontamination",
    ]
    decon = facts.get("decontamination")
    lines.append(
        f"`{json.dumps(decon, sort_keys=True)}`"
        if decon
        else "No decontamination manifest in the run directory (the corpus was not decontaminated here)."
    )
    lines += ["", "## Evaluation"]
    evaluation = facts.get("evaluation") or {}
    if evaluation:
        lines += ["| benchmark | metric | value |", "|---|---|---|"]
        lines += [
            f"| {bench} | {metric} | {_fmt(value)} |"
            for bench, metrics in sorted(evaluation.items())
            for metric, value in sorted(metrics.items())
        ]
    else:
        lines.append("Not evaluated yet (`phiray evaluate` adds its numbers here).")
    lines += [
        "",
        "## Lineage",
        f"- run directory: `{facts.get('run_dir')}`, stage `{facts.get('stage')}`, "
        f"config hash `{facts.get('config_hash')}`, seed {facts.get('seed')}",
        f"- initial weights: {facts.get('init_from') or 'fresh initialisation'}",
        "",
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    """Counts with thousands separators (token totals run to billions), the rest as everywhere else."""
    if isinstance(value, int):
        return f"{value:,}"
    return format_value(value, none="-")


def write_card(rd, model_dir: str, facts: dict[str, Any]) -> None:
    """Write ``model_card.json`` and the rendered ``README.md`` into ``model_dir`` (run-dir relative)."""
    rd.write_json(posixpath.join(model_dir, CARD_DATA), facts)
    rd.write_text(posixpath.join(model_dir, CARD_FILE), render(facts))


def add_evaluation(rd, model_dir: str, results: dict[str, dict[str, Any]]) -> bool:
    """Merge ``results`` ({benchmark: {metric: value}}) into a model dir's card; False when it has none."""
    path = posixpath.join(model_dir, CARD_DATA)
    if not rd.exists(path):
        return False
    facts = rd.read_json(path)
    for bench, metrics in results.items():
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        facts.setdefault("evaluation", {})[bench] = numbers
    write_card(rd, model_dir, facts)
    return True
