"""Lessons 01-03 against real-size checkpoints in a local Hugging Face cache, offline, profile `auto`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import transformers
from huggingface_hub import scan_cache_dir, try_to_load_from_cache

from vlm_course.loadplan import plan_load
from vlm_course.sizes.count import count_parameters

REPO = Path(__file__).resolve().parents[2]
LESSONS = ("01_clip", "02_siglip", "03_blip")


def test_the_cache_is_laid_out_as_the_hub_client_lays_it_out(hub_env, small_hub_models):
    cache = hub_env["HF_HUB_CACHE"]
    info = scan_cache_dir(cache)
    assert not info.warnings
    assert {repo.repo_id for repo in info.repos} == set(small_hub_models)
    for repo in info.repos:
        (revision,) = repo.revisions
        assert (Path(repo.repo_path) / "refs" / "main").read_text() == revision.commit_hash
        names = {f.file_name for f in revision.files}
        assert {"config.json", "model.safetensors.index.json", "processor_config.json"} <= names
        assert try_to_load_from_cache(repo.repo_id, "config.json", cache_dir=cache) == str(
            Path(revision.snapshot_path) / "config.json")


def test_auto_picks_the_cached_real_checkpoint_and_it_loads_whole(hub_env, small_hub_model):
    hub_id = small_hub_model
    plan = plan_load(hub_id)
    assert (plan.profile, plan.source, plan.checkpoint, plan.download_bytes) == ("auto", "hub", hub_id, 0), plan.reason
    model_class = getattr(transformers, plan.model_class)
    model, info = model_class.from_pretrained(plan.checkpoint, cache_dir=hub_env["HF_HUB_CACHE"],
                                              output_loading_info=True, **plan.model_kwargs)
    assert not any(info.values()), info
    assert count_parameters(model).total == count_parameters(hub_id).total
    processor = transformers.AutoProcessor.from_pretrained(hub_id, cache_dir=hub_env["HF_HUB_CACHE"])
    assert len(processor.tokenizer) <= model.config.text_config.vocab_size


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_runs_on_real_size_checkpoints(hub_env, lesson):
    notebook = REPO / "notebooks" / f"{lesson}.ipynb"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(notebook), "--nbval-lax", "--nbval-cell-timeout=600",
         "-p", "no:cacheprovider", "-q", "--timeout=0"],
        cwd=REPO, env=hub_env, capture_output=True, text=True, timeout=880,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
