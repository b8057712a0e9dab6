"""Model cards: facts from a training phase, rendered Markdown, evaluation numbers merged in later."""

from phiray.model.card import add_evaluation, render, training_facts, write_card
from phiray.rundir import RunDir


def _facts():
    info = {
        "steps": 10,
        "strategy": "deepspeed",
        "precision": "fp32",
        "world_size": 2,
        "n_params_non_embedding": 1234,
        "history": {"sources": {"code": 60, "textbooks": 20}},
        "summary": {"val_loss_start": 8.0, "val_loss_final": 5.5, "tokens_per_s": 900.0, "mfu": None},
    }
    spec = {
        "stage": "pretrain",
        "run_root": "s3://bucket/runs/x",
        "seed": 7,
        "init_from": None,
        "seq_len": 64,
        "model": {"n_layer": 2, "d_model": 128, "n_head": 2, "rotary_dim": 32, "n_ctx": 256, "vocab_size": 4096},
        "phase": {"global_batch_size": 8, "lr": 1e-3},
        "mixture": {"code": 0.75, "textbooks": 0.25},
        "missing_sources": [],
    }
    return training_facts(info, spec, config_hash="abc123", decontamination={"rows": {"removed": 3}})


def test_card_states_data_config_decontamination_and_lineage():
    facts = _facts()
    assert facts["data"]["tokens_total"] == 10 * 8 * 64
    assert facts["data"]["tokens_seen"] == {"code": 3840, "textbooks": 1280}
    card = render(facts)
    for text in (
        "# phiray model: pretrain",
        "| code | 0.75 | 3,840 |",
        "5,120 tokens in all",
        "removed",
        "s3://bucket/runs/x",
        "abc123",
        "fresh initialisation",
        "Not evaluated yet",
    ):
        assert text in card, text


def test_evaluation_numbers_are_merged_into_the_card(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert not add_evaluation(rd, "pretrain/model", {"humaneval": {"pass@1": 0.1}})  # no card: nothing to update
    write_card(rd, "pretrain/model", _facts())
    assert add_evaluation(rd, "pretrain/model", {"humaneval": {"pass@1": 0.125, "tasks": 40, "isolation": "ns"}})
    card = rd.read_text("pretrain/model/README.md")
    assert "| humaneval | pass@1 | 0.125 |" in card and "| humaneval | tasks | 40 |" in card
    assert "isolation" not in card.split("## Evaluation")[1].split("## Lineage")[0]
