"""Profile resolution: hub id -> real id or toy folder, and the offline-hub error."""

from __future__ import annotations

import pytest
import requests

from vlm_course import profiles, toy
from vlm_course.catalogue import MODELS
from vlm_course.profiles import HubUnavailableError, ProfileError, resolve, resolve_model


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("VLM_COURSE_PROFILE", raising=False)
    profiles.hub_reachable.cache_clear()
    yield tmp_path / "hub"
    profiles.hub_reachable.cache_clear()


def _fake_cached(cache, model_id):
    repo = cache / ("models--" + model_id.replace("/", "--"))
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_text("")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")


def test_toy_profile_gives_the_toy_folder_of_the_same_class(empty_cache):
    assert toy.available() == list(toy.TOY_NAMES)
    for hub_id, entry in MODELS.items():
        target = resolve(hub_id, "toy", verbose=False)
        assert target == str(toy.model_path(entry.toy_name))
        assert toy.TOY_MODELS[entry.toy_name][0] == entry.model_class


def test_both_clip_ids_and_both_next_ids_share_a_toy():
    names = {m.hub_id: m.toy_name for m in MODELS.values()}
    assert names["openai/clip-vit-base-patch32"] == names["openai/clip-vit-large-patch14"] == "clip"
    assert names["llava-hf/llava-v1.6-mistral-7b-hf"] == names["llava-hf/llama3-llava-next-8b-hf"] == "llava-next"
    assert set(names.values()) == set(toy.TOY_NAMES)


def test_profile_comes_from_argument_then_environment(monkeypatch, empty_cache):
    monkeypatch.setenv("VLM_COURSE_PROFILE", "toy")
    assert profiles.current_profile() == "toy"
    assert profiles.current_profile("hub") == "hub"
    monkeypatch.delenv("VLM_COURSE_PROFILE")
    assert profiles.current_profile() == "auto"
    with pytest.raises(ProfileError, match="unknown profile 'gpu'"):
        profiles.current_profile("gpu")


def test_unknown_names_pass_through_in_every_profile(capsys):
    for profile in ("toy", "auto", "hub"):
        res = resolve_model("someone/unknown-model", profile)
        assert (res.target, res.profile) == ("someone/unknown-model", "direct")
    assert "not a course model; loaded as given" in capsys.readouterr().out


def test_hub_profile_offline_with_empty_cache_names_the_fix(monkeypatch, empty_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError) as err:
        resolve("openai/clip-vit-base-patch32", "hub")
    message = str(err.value)
    assert "openai/clip-vit-base-patch32" in message and "HF_HUB_OFFLINE=1" in message
    assert "vlm-course download" in message and "VLM_COURSE_PROFILE=toy" in message


def test_hub_profile_unreachable_hub_names_the_fix(monkeypatch, empty_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def refuse(*args, **kwargs):
        raise requests.ConnectionError("no route")

    monkeypatch.setattr(requests, "head", refuse)
    with pytest.raises(HubUnavailableError, match="cannot be reached"):
        resolve("openai/clip-vit-base-patch32", "hub")


def test_auto_uses_the_cache_first(monkeypatch, empty_cache, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fake_cached(empty_cache, "openai/clip-vit-base-patch32")
    res = resolve_model("openai/clip-vit-base-patch32")
    assert (res.profile, res.target) == ("hub", "openai/clip-vit-base-patch32")
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and "local Hugging Face cache" in line and "'hub'" in line


def test_auto_falls_back_to_toy_offline_and_says_why(monkeypatch, empty_cache, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = resolve_model("openai/clip-vit-base-patch32")
    assert res.profile == "toy" and res.target == str(toy.model_path("clip"))
    assert "HF_HUB_OFFLINE=1" in capsys.readouterr().out


def test_auto_uses_the_hub_when_it_answers(monkeypatch, empty_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []
    monkeypatch.setattr(requests, "head", lambda url, **kw: calls.append((url, kw)))
    res = resolve_model("Salesforce/blip-vqa-base", verbose=False)
    assert (res.profile, res.target) == ("hub", "Salesforce/blip-vqa-base")
    assert calls and calls[0][1]["timeout"] == pytest.approx(2.0)


def test_hub_reachable_never_asks_when_offline(monkeypatch, empty_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(requests, "head", lambda *a, **k: pytest.fail("must not touch the network"))
    assert profiles.hub_reachable() is False


def test_toy_model_path_errors():
    with pytest.raises(KeyError, match="unknown toy model 'gpt'"):
        toy.model_path("gpt")


def test_auto_resolves_llava_to_the_cached_laptop_size_stand_in_on_a_cpu(monkeypatch, empty_cache, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLM_COURSE_DEVICE", "cpu")  # a 7B generator in fp32 never passes on a CPU (memory or speed)
    _fake_cached(empty_cache, "llava-hf/llava-interleave-qwen-0.5b-hf")
    res = resolve_model("llava-hf/llava-1.5-7b-hf")
    assert (res.profile, res.target) == ("hub", "llava-hf/llava-interleave-qwen-0.5b-hf")
    assert "laptop-size" in capsys.readouterr().out
