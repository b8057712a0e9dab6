"""`phiray` command line: one sub-command per stage of ``phiray.stages.STAGES``, plus run/status and tools.

phiray <stage> --run-dir DIR [--preset P] [--config F] [a.b.c=value ...]
phiray run     --run-dir DIR [--preset P] [--config F] [--force STAGE] [a.b.c=value ...]
phiray status  DIR
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import yaml

from phiray.config import ConfigError, RunConfig, is_speed_only, load_config, preset_names
from phiray.pipeline import STATUS_HEADER, Stage, run_config, run_pipeline, run_stage, status_rows
from phiray.report.build import build
from phiray.rundir import CONFIG_FILE, RunDir
from phiray.runtime import prepare_environment
from phiray.stages import STAGE_BY_NAME, STAGES

# Tools that are not pipeline stages: module providing add_arguments(parser) and main(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "report": ("phiray.report.build", "Write the run's HTML + Markdown report."),
    "eval": ("phiray.evals.cli", "Evaluate a model, an endpoint or a samples file (pass@k)."),
    "serve": ("phiray.serve.cli", "Serve a model and the evaluator (OpenAI-compatible) with Ray Serve."),
    "submit": ("phiray.cluster.submit", "Submit a stage to a Ray cluster or as a KubeRay RayJob."),
}

# Sub-commands about the pipeline as a whole (next to one per stage and the COMMANDS tools).
PIPELINE_COMMANDS = ("run", "status", "config")

log = logging.getLogger("phiray")


def _config_help(stage: Stage) -> str:
    """The config fields a stage reads, with their descriptions (the --help epilog)."""
    lines = ["config keys (override with key.path=value):"]
    for path in stage.sections:
        parts = path.split(".")
        if len(parts) == 1:
            model = RunConfig.model_fields[path].annotation
            for name, info in model.model_fields.items():
                speed = " [speed only: never re-runs the stage]" if is_speed_only(info) else ""
                lines.append(f"  {path}.{name}: {info.description or ''}{speed}")
        else:
            info = RunConfig.model_fields[parts[0]].annotation.model_fields[parts[1]]
            lines.append(f"  {path}: {info.description or ''}")
    return "\n".join(lines)


def _add_config_args(p: argparse.ArgumentParser, run_dir_required: bool = False) -> None:
    p.add_argument(
        "--run-dir",
        required=run_dir_required,
        default=None,
        help="Run directory: local path or pyarrow.fs URI (default runs/<preset>).",
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"One of {', '.join(preset_names())} (default: the run dir's config.yaml if present, else tiny).",
    )
    p.add_argument("--config", default=None, help="YAML file merged over the preset.")
    p.add_argument("overrides", nargs="*", metavar="a.b.c=value", help="Config overrides, applied last.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phiray",
        description="phiray: the phi-1 'Textbooks Are All You Need' recipe on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "run",
        help="Run the configured stages in order, skipping the completed ones.",
        description="Run every stage in run.stages, skipping those whose manifest is current.",
    )
    _add_config_args(p)
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="Re-run this stage (repeatable).")
    p.add_argument("--only", default=None, help="Comma-separated stages to consider (default: run.stages).")
    p = sub.add_parser("status", help="Table of stages: done/stale/missing, rows, key metrics, time.")
    p.add_argument("run_dir", help="Run directory.")
    p = sub.add_parser("config", help="Print the resolved config as YAML.")
    _add_config_args(p)
    for stage in STAGES:
        p = sub.add_parser(
            stage.name,
            help=stage.help,
            description=stage.help,
            epilog=_config_help(stage),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_config_args(p)
        if stage.name == "sweep":  # sugar for the override sweep.resume=true (Tuner.restore of sweep/tune)
            p.add_argument("--resume", action="store_true", help="Resume the interrupted sweep in the run dir.")
    for name, (module, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
        importlib.import_module(module).add_arguments(p)
    return parser


def resolve_config(args: argparse.Namespace) -> tuple[RunConfig, RunDir]:
    """preset < --config < overrides; with neither --preset nor --config, the run dir's own config."""
    preset = args.preset
    base = None
    if args.run_dir is None:
        args.run_dir = f"runs/{preset or 'tiny'}"
    rd = RunDir(args.run_dir)
    if preset is None and args.config is None and rd.exists(CONFIG_FILE):
        base = yaml.safe_load(rd.read_text(CONFIG_FILE))
    elif preset is None:
        preset = "tiny"
    cfg = load_config(preset=preset, config_file=args.config, overrides=args.overrides, base=base)
    return cfg, rd


def cmd_status(run_dir: str, out=sys.stdout) -> int:
    rd = RunDir(run_dir)
    if not rd.exists(CONFIG_FILE):
        print(f"phiray: {run_dir} is not a run directory (no {CONFIG_FILE})", file=sys.stderr)
        return 2
    rows = [STATUS_HEADER] + status_rows(STAGES, run_config(rd), rd)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    prepare_environment()  # before any module imports ray (it reads the loopback switch at import)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s phiray %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "status":
            return cmd_status(args.run_dir)
        if args.command in COMMANDS:
            return int(importlib.import_module(COMMANDS[args.command][0]).main(args) or 0)
        if getattr(args, "resume", False):
            args.overrides.append("sweep.resume=true")
        cfg, rd = resolve_config(args)
        if args.command == "config":
            print(cfg.to_yaml(), end="")
            return 0
        if args.command == "run":
            only = [s.strip() for s in args.only.split(",")] if args.only else None
            run_pipeline(STAGES, cfg, rd, force=set(args.force), only=only)
            cmd_status(rd.location)

            paths = build(rd)
            print(f"report: {paths['html']}")
            return 0
        run_stage(STAGE_BY_NAME[args.command], cfg, rd, STAGE_BY_NAME)
        return 0
    except ConfigError as err:
        print(f"phiray: config error: {err}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        if args.verbose:
            raise
        print(f"phiray: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
