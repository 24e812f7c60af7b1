"""vlm-course download: the manifest agrees with the course registry and the size specs; sizes are
shown first; offline or unreachable hubs fail fast; snapshot_download gets the pinned revision and
the allow-patterns. No network: the hub client is replaced by fakes."""

from __future__ import annotations

import dataclasses
import re

import huggingface_hub
import pytest

from vlm_course import cli, profiles
from vlm_course.catalogue import MODELS, lesson_models
from vlm_course.sizes import download as dl
from vlm_course.sizes.count import meta_model
from vlm_course.sizes.download import DownloadError, download, load_manifest
from vlm_course.sizes.fit import SIMULATED, Machine


@pytest.fixture
def fake_hub(monkeypatch):
    """Records snapshot_download calls instead of downloading."""
    calls: list[dict] = []

    def snapshot_download(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        return f"/cache/{repo_id}"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(profiles, "hub_reachable", lambda timeout=profiles.HUB_TIMEOUT_S: True)
    monkeypatch.setattr(dl, "is_cached", lambda entry: False)
    # a machine with room for the downloads: the tests do not depend on this disk's free space
    # (test_too_little_disk_is_refused sets its own)
    monkeypatch.setattr(dl, "free_disk", lambda path: 10**15)


@pytest.mark.parametrize("entry", load_manifest(), ids=lambda e: e.hub_id)
def test_manifest_sizes_match_the_stored_weights(entry):
    # Stored tensors in the stored dtype: older conversions (BLIP) save tied tensors twice, files
    # written by recent transformers (the Qwen-based stand-in) once.
    model = meta_model(entry.hub_id)
    once = sum(p.numel() for p in model.parameters())
    twice = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    nbytes = {"float32": 4, "float16": 2, "bfloat16": 2}[entry.stored_dtype]
    assert once * nbytes <= entry.download_bytes < twice * nbytes * 1.01


def test_manifest_keeps_out_duplicate_framework_weights():
    import fnmatch

    def allowed(name: str, patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in patterns)

    for entry in load_manifest():
        p = entry.allow_patterns
        assert allowed("model.safetensors", p) and allowed("config.json", p) and allowed("tokenizer.json", p)
        assert not any(allowed(f, p) for f in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"))


def test_unknown_lesson_names_the_lessons_with_checkpoints():
    with pytest.raises(DownloadError, match="lesson 07 loads no hub checkpoint; lessons with checkpoints: 01"):
        dl.lesson_plan(7, SIMULATED["8 GB laptop (CPU)"], "auto")


def seeds(lesson: int) -> list[dl.ManifestEntry]:
    """The downloads of lesson ``lesson``'s seed checkpoints (what a big machine fetches)."""
    return [dl.entry(m) for m in lesson_models(lesson)]


@pytest.fixture
def laptop(monkeypatch):
    """The command plans for a 16 GB CPU laptop under the default profile."""
    monkeypatch.setenv("VLM_COURSE_PROFILE", "auto")
    monkeypatch.setattr(Machine, "detect", classmethod(lambda cls: SIMULATED["16 GB laptop (CPU)"]))


def test_offline_fails_fast_after_showing_sizes(monkeypatch, fake_hub, capsys, laptop):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(dl, "is_cached", lambda entry: False)
    assert cli.main(["download", "--lesson", "3"]) == 1
    captured = capsys.readouterr()
    assert "Salesforce/blip-image-captioning-base     991 MB" in captured.out  # the plan comes first
    assert "to download: 2.5 GB" in captured.out
    assert "HF_HUB_OFFLINE=1 is set" in captured.err and "Salesforce/blip-vqa-base" in captured.err
    assert fake_hub == []


def test_unreachable_hub_fails_fast(monkeypatch, fake_hub):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(profiles, "hub_reachable", lambda timeout=profiles.HUB_TIMEOUT_S: False)
    monkeypatch.setattr(dl, "is_cached", lambda entry: False)
    with pytest.raises(DownloadError, match="did not answer within 2 s.*VLM_COURSE_PROFILE=toy"):
        download(seeds(2), out=lambda line: None)
    assert fake_hub == []


def test_dry_run_downloads_nothing(online, fake_hub, capsys):
    assert cli.main(["download", "--all", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"llava-hf/llava-1.5-7b-hf +14.1 GB +05,06,09 +main +to download", out)
    assert f"to download: {sum(m.download_bytes for m in MODELS.values()) / 1e9:.1f} GB" in out
    assert fake_hub == []


def test_download_passes_revision_and_patterns(online, fake_hub, monkeypatch, tmp_path):
    manifest = load_manifest()
    manifest[0] = dataclasses.replace(manifest[0], revision="a" * 40)
    entries = [e for e in manifest if "01" in e.lessons]
    lines: list[str] = []
    folders = download(entries, out=lines.append)
    assert folders == ["/cache/openai/clip-vit-base-patch32", "/cache/openai/clip-vit-large-patch14"]
    assert fake_hub[0]["revision"] == "a" * 40 and fake_hub[1]["revision"] is None
    assert "*.safetensors" in fake_hub[0]["allow_patterns"]
    assert lines[0].startswith("checkpoint") and lines[-1] == "fetching openai/clip-vit-large-patch14 (1.7 GB)"


def test_everything_cached_succeeds_offline(monkeypatch, fake_hub):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(dl, "is_cached", lambda entry: True)
    lines: list[str] = []
    folders = download(seeds(2), out=lines.append)
    assert folders == ["/cache/openai/clip-vit-base-patch32", "/cache/google/siglip-base-patch16-224"]
    assert fake_hub[0]["local_files_only"] is True
    assert "everything is already cached; nothing to download" in lines


def test_too_little_disk_is_refused(online, fake_hub, monkeypatch):
    monkeypatch.setattr(dl, "free_disk", lambda path: 10**9)
    with pytest.raises(DownloadError, match=r"need 29\.3 GB but .* has 1\.0 GB free.*HF_HOME"):
        download(seeds(5), out=lambda line: None)
    assert fake_hub == []


def test_failed_download_says_how_to_resume(online, monkeypatch):
    def broken(repo_id, **kwargs):
        raise OSError("connection reset")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", broken)
    with pytest.raises(DownloadError, match="downloading openai/clip-vit-base-patch32 failed: OSError: connection reset.*again"):
        download(seeds(2), out=lambda line: None)


def test_download_requires_a_choice(capsys):
    with pytest.raises(SystemExit):
        cli.main(["download"])
    assert "one of the arguments --lesson --all is required" in capsys.readouterr().err


# ---------------------------------------------------------------- download --lesson N follows the load plans

def test_lesson_5_fetches_only_what_it_loads_here():
    laptop = SIMULATED["16 GB laptop (CPU)"].with_cache(False)
    entries, notes = dl.lesson_plan(5, laptop, "auto")
    assert [e.hub_id for e in entries] == ["llava-hf/llava-interleave-qwen-0.5b-hf"]  # NeXT runs as the toy
    assert len(notes) == 2 and "the toy" in notes[1]
    a100 = SIMULATED["80 GB A100 (CUDA)"].with_cache(False)
    entries, _ = dl.lesson_plan("05", a100, "auto")  # the command is consent to big downloads
    assert [e.hub_id for e in entries] == ["llava-hf/llava-1.5-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf"]


def test_lesson_plan_under_hub_profile_refuses_what_cannot_fit():
    with pytest.raises(DownloadError, match="cannot load it"):
        dl.lesson_plan(6, SIMULATED["8 GB laptop (CPU)"].with_cache(False), "hub")


def test_download_lesson_dry_run_on_a_laptop(monkeypatch, capsys, laptop):
    monkeypatch.setattr(dl, "is_cached", lambda entry: False)
    assert cli.main(["download", "--lesson", "5", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"llava-hf/llava-interleave-qwen-0.5b-hf +1.7 GB +05,06,09 +main +to download", out)
    assert "llama3" not in out and "to download: 1.7 GB" in out


def test_download_lesson_under_toy_profile_fetches_nothing(capsys):
    assert cli.main(["download", "--lesson", "4"]) == 0  # tests run with VLM_COURSE_PROFILE=toy
    assert "nothing to download" in capsys.readouterr().out
