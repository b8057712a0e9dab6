import argparse
import subprocess
import sys

import pytest

from phiray.cli import COMMANDS, PIPELINE_COMMANDS, build_parser, main
from phiray.stages import STAGES


def test_help_lists_every_stage_and_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for stage in STAGES:
        assert stage.name in out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_stage_help_shows_its_config_keys(stage, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([stage, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    section = next(s for s in STAGES if s.name == stage).sections[0]
    assert f"{section}." in out or f"{section}:" in out


def test_stage_table_is_consistent():
    names = [s.name for s in STAGES]
    for i, stage in enumerate(STAGES):
        assert all(up in names[:i] for up in stage.after), f"{stage.name} depends on a later stage"
    from phiray.config import RunConfig

    assert all(s in names for s in RunConfig().run.stages)


def _subcommands(parser) -> dict:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_stage_table_matches_the_cli_parser():
    """Every stage of phiray.stages.STAGES has its sub-command, and every sub-command is a stage, a tool of
    COMMANDS or one of the pipeline commands: the parser is built from the table, never beside it."""
    commands = _subcommands(build_parser())
    stages = {s.name for s in STAGES}
    assert stages <= set(commands), f"stages without a sub-command: {stages - set(commands)}"
    orphans = set(commands) - stages - set(COMMANDS) - set(PIPELINE_COMMANDS)
    assert not orphans, f"sub-commands that are neither a stage nor a tool: {orphans}"
    for stage in STAGES:
        assert commands[stage.name].description == stage.help
        assert stage.run is not None and stage.run.__name__ == f"_run_{stage.name}", stage.name


def test_the_stage_table_does_not_import_the_cli():
    """The report and the stages read the table from phiray.stages: no import circle through phiray.cli."""
    code = "import sys, phiray.report.sections, phiray.stages.thesis; print('phiray.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_run_twice_then_status(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "phiray", "run", "--preset", "tiny", "--run-dir", str(run_dir), "run.stages=[]"]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert (run_dir / "config.yaml").exists()
    status = subprocess.run([sys.executable, "-m", "phiray", "status", str(run_dir)], capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout.startswith("stage")
    bad = subprocess.run(
        [sys.executable, "-m", "phiray", "status", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "not a run directory" in bad.stderr


def test_config_command_uses_run_dir_config(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert main(["run", "--run-dir", run_dir, "run.stages=[]", "model.n_layer=3"]) == 0
    capsys.readouterr()
    assert main(["config", "--run-dir", run_dir]) == 0
    assert "n_layer: 3" in capsys.readouterr().out
