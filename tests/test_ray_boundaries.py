"""Configs cross Ray boundaries as the pydantic models (validated once, on the driver), never as dicts."""

import typing

import pytest

from phiray.config import EmbedConfig, SandboxConfig, TeacherConfig
from phiray.data.scorers import DocumentEmbedder, QualityScorer
from phiray.sandbox.placement import _Host
from phiray.teacher.vllm_teacher import LookupBatch
from phiray.teacher.worker import GenerateBatch, VerifyBatch


@pytest.mark.parametrize(
    "actor, argument, model",
    [
        (GenerateBatch, "teacher_cfg", TeacherConfig),
        (LookupBatch, "teacher_cfg", TeacherConfig),
        (VerifyBatch, "sandbox_cfg", SandboxConfig),
        (_Host, "cfg", SandboxConfig),
        (QualityScorer, "embed_cfg", EmbedConfig),
        (DocumentEmbedder, "embed_cfg", EmbedConfig),
    ],
)
def test_actor_constructors_take_config_models(actor, argument, model):
    assert typing.get_type_hints(actor.__init__)[argument] is model


def test_a_model_handed_to_an_actor_works_there():
    """The Ray Data callables run on the model they are given (a real sandbox and the procedural teacher)."""
    verify = VerifyBatch(SandboxConfig())
    rows = {
        "kind": ["exercise"],
        "status": ["ok"],
        "prompt": ["def add(a, b):\n"],
        "solution": ["    return a + b\n"],
        "tests": ["assert add(1, 2) == 3\n"],
        "entry_point": ["add"],
    }
    out = verify(rows)
    assert out["verified"] == [True]
    generate = GenerateBatch(TeacherConfig(kind="procedural"), cache_dir=None)
    assert generate.teacher is not None
