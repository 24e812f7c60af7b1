"""``vlm-course serve``: flags from the load plan, the capacity estimate, and a real start that answers
an image question before printing the line learners set."""

from __future__ import annotations

import re

import pytest

from vlm_course import cli
from vlm_course.loadplan import plan_load
from vlm_course.serve import _healthy, capacity, free_port, serve_flags
from vlm_course.sizes.fit import SIMULATED

LLAVA = "llava-hf/llava-1.5-7b-hf"
T4, A100 = SIMULATED["16 GB T4 (CUDA)"], SIMULATED["80 GB A100 (CUDA)"]


def test_flags_follow_the_load_plan():
    assert serve_flags(plan_load(LLAVA, "hub", A100)) == ["--dtype", "bfloat16"]
    assert serve_flags(plan_load(LLAVA, "hub", T4)) == ["--dtype", "float16", "--quantization", "bnb-4bit"]
    assert serve_flags(plan_load(LLAVA, "toy")) == ["--dtype", "float32"]


def test_capacity_counts_conversations_left_after_the_weights():
    big, small = capacity(LLAVA, "bf16", A100), capacity(LLAVA, "nf4", T4)
    assert small.weights < big.weights / 3, "NF4 weights are about a quarter of bf16's"
    assert big.per_learner == small.per_learner > 0, "the key/value cache is fp16/bf16 either way"
    # llava-1.5-7b: 32 layers x 2 (K, V) x 4096 x 2 bytes = 512 KiB per cached token (all but the last)
    assert big.per_learner == 512 * 1024 * (big.tokens_per_learner - 1)
    assert big.tokens_per_learner > 576, "the image's 576 tokens and the text"
    assert big.learners == (big.usable - big.weights - big.working) // big.per_learner
    assert 100 < big.learners < 200 and 10 < small.learners < 40
    assert f"about {big.learners} learners" in big.describe()


def test_unknown_model_is_refused_before_starting(capsys):
    assert cli.main(["serve", "llava-hf/no-such-model", "--port", str(free_port()), "--check-only"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_port_in_use_is_explained(toy_llava_server, capsys):
    code = cli.main(["serve", LLAVA, "--host", "127.0.0.1", "--port", str(toy_llava_server.port), "--check-only"])
    assert code == 1 and "already answers" in capsys.readouterr().err


def test_serve_answers_an_image_question_then_prints_the_learners_line(capsys):
    port = free_port()
    assert cli.main(["serve", LLAVA, "--host", "127.0.0.1", "--port", str(port), "--check-only"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "--dtype float32" in out, "the load plan's choice is shown"
    assert re.search(r"test question answered in [\d.]+ s: 'The image shows ", out)
    assert f"VLM_COURSE_SERVER=http://127.0.0.1:{port}/v1" in out
    assert not _healthy("127.0.0.1", port), "--check-only stops the server"


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    monkeypatch.setenv("VLM_COURSE_PROFILE", "toy")


def test_lab_server_doc_table_is_what_capacity_computes():
    """docs/lab-server.md's learners-per-GPU table comes from vlm_course.serve.capacity."""
    from pathlib import Path

    from vlm_course.sizes.fit import gib

    doc = (Path(__file__).resolve().parents[1] / "docs" / "lab-server.md").read_text()
    rows = re.findall(r"^\| (16 GB T4|80 GB A100) \((.+?)\) \| (\S+) \| (\w+) \| (.+?) \| (\d+) MiB \((\d+) tokens\) \| (\d+) \|$",
                      doc, re.M)
    assert len(rows) == 4
    for gpu, usable, model, dtype, weights, per_learner, tokens, learners in rows:
        machine = T4 if gpu == "16 GB T4" else A100
        assert plan_load(model, "hub", machine).dtype_name == dtype
        c = capacity(model, dtype, machine)
        assert (usable, weights, int(per_learner), int(tokens), int(learners)) == (
            gib(c.usable), gib(c.weights), round(c.per_learner / 2**20), c.tokens_per_learner, c.learners)
