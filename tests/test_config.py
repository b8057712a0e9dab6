import subprocess
import sys

import pytest
import yaml

from phiray.config import ConfigError, RunConfig, load_config, parse_override, preset_names


def test_presets_load_with_paper_shapes():
    assert {"tiny", "phi-1-small", "phi-1", "phi-1.5", "phi-2"} <= set(preset_names())
    for name in preset_names():
        cfg = load_config(name)
        assert cfg.run.preset == name
    small = load_config("phi-1-small").model
    assert (small.n_layer, small.d_model, small.n_head, small.rotary_dim, small.n_ctx) == (20, 1024, 16, 32, 2048)
    phi1 = load_config("phi-1")
    assert (phi1.grow.target.n_layer, phi1.grow.target.d_model, phi1.grow.target.n_head) == (24, 2048, 32)
    assert phi1.model.vocab_size == 51200 and phi1.tokenizer.kind == "codegen"
    assert (
        phi1.finetune.lr,
        phi1.finetune.warmup_steps,
        phi1.finetune.weight_decay,
        phi1.finetune.max_steps,
        phi1.finetune.global_batch_size,
    ) == (1e-4, 50, 0.01, 6000, 256)
    phi2 = load_config("phi-2").model
    assert (phi2.n_layer, phi2.d_model, phi2.n_head) == (32, 2560, 32)


def test_precedence_preset_then_file_then_overrides(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump({"model": {"n_layer": 5, "d_model": 96}, "pretrain": {"lr": 0.5}}))
    cfg = load_config("tiny", cfg_file, ["model.n_layer=7", "run.stages=[ingest, dedup]"])
    assert cfg.model.n_layer == 7  # override beats file
    assert cfg.model.d_model == 96  # file beats preset
    assert cfg.model.n_head == 2  # preset beats default (tiny: 2 heads of 64)
    assert cfg.pretrain.lr == 0.5
    assert cfg.run.stages == ["ingest", "dedup"]
    assert RunConfig().model.n_layer == 24  # defaults are phi-1's


@pytest.mark.parametrize(
    "override, key",
    [
        (["model.n_layer=abc"], "model.n_layer"),
        (["model.nope=1"], "model.nope"),
        (["nosection.x=1"], "nosection"),
        (["filter.threshold=[1,2]"], "filter.threshold"),
        (["model.d_model=100", "model.n_head=3"], "model"),
    ],
)
def test_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_config("tiny", overrides=override)
    message = str(info.value)
    assert message.startswith(key) and "\n" not in message


def test_bad_preset_and_file(tmp_path):
    with pytest.raises(ConfigError, match="preset.*unknown preset 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="no such file"):
        load_config("tiny", tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config("tiny", bad)
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_override("model.n_layer")


def test_section_hash_tracks_only_named_sections():
    a = load_config("tiny")
    b = load_config("tiny", overrides=["pretrain.lr=0.1"])
    assert a.section_hash(["ingest"]) == b.section_hash(["ingest"])
    assert a.section_hash(["pretrain"]) != b.section_hash(["pretrain"])
    assert a.section_hash(["run.seed"]) != load_config("tiny", overrides=["run.seed=7"]).section_hash(["run.seed"])


def test_every_field_is_described():
    def walk(model, prefix):
        for name, info in model.model_fields.items():
            assert info.description, f"{prefix}{name} has no description"
            ann = info.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields") and prefix.count(".") < 2:
                walk(ann, f"{prefix}{name}.")

    walk(RunConfig, "")


def test_cli_one_line_error_for_wrong_type(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "phiray",
            "run",
            "--preset",
            "tiny",
            "--run-dir",
            str(tmp_path / "r"),
            "model.n_layer=abc",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "model.n_layer" in lines[0]
    assert not (tmp_path / "r").exists()  # failed before any work


def test_set_path_replaces_whole_values_and_makes_parents():
    from phiray.config import set_path

    tree = {"pretrain": {"mixture": {"code": 0.5, "textbooks": 0.5}}, "run": 3}
    mixture = {"code": 1.0}
    set_path(tree, "pretrain.mixture", mixture)
    set_path(tree, "run.seed", 7)  # a non-dict parent becomes a dict
    set_path(tree, ["a", "b", "c"], [1])
    assert tree == {"pretrain": {"mixture": {"code": 1.0}}, "run": {"seed": 7}, "a": {"b": {"c": [1]}}}
    mixture["code"] = 0.0
    assert tree["pretrain"]["mixture"] == {"code": 1.0}  # a copy, not the caller's object


def test_one_value_format():
    from phiray.formatting import format_pairs, format_value

    assert [format_value(v) for v in (0.123456, 3, None, "x")] == ["0.1235", "3", "–", "x"]
    assert format_value(None, none="-") == "-"
    assert format_pairs({"in": 900, "loss": 1.23456}) == "in=900 loss=1.235"
