"""`phiray report RUN_DIR`: collect every section from the run directory and write one self-contained HTML page
(plus Markdown and PNGs). The top of the report package: it imports ``sections``, which import ``render``."""

from __future__ import annotations

import argparse
import logging

from phiray.report.render import write_report
from phiray.report.sections import collect
from phiray.report.tracking import tensorboard_command
from phiray.rundir import CONFIG_FILE, RunDir

log = logging.getLogger("phiray")


def build(rd: RunDir) -> dict[str, str]:
    """Collect every section from the run dir and write report.html / report.md / PNGs."""
    title, sections = collect(rd)
    paths = write_report(rd, sections, title)
    log.info("report: %s", paths["html"])
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="Run directory (local path or pyarrow.fs URI).")


def main(args: argparse.Namespace) -> int:
    rd = RunDir(args.run_dir)
    if not rd.exists(CONFIG_FILE):
        print(f"phiray: {args.run_dir} is not a run directory (no {CONFIG_FILE})")
        return 2
    paths = build(rd)
    print(paths["html"])
    print(paths["markdown"])
    command = tensorboard_command(rd)
    if command:
        print(f"TensorBoard: {command}")
    return 0
