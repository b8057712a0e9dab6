import subprocess
import sys

import pytest

from phiray.cli import COMMANDS, STAGES, build_parser, main


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
