"""`vlm-course doctor`: what it reports and its exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vlm_course import doctor, toy
from vlm_course.cli import main


def test_doctor_reports_versions_device_memory_cache_and_profile(capsys, monkeypatch, without_hub_lessons):
    monkeypatch.setattr(toy, "available", lambda: list(toy.TOY_NAMES))
    code = main(["doctor"])
    out = capsys.readouterr().out
    for name in ("python", "torch", "transformers", "bitsandbytes", "device", "RAM", "free disk", "HF cache",
                 "toy checkpoints", "profile"):
        assert f" {name} " in out or f" {name}\n" in out, name
    assert "cpu:" in out  # no GPU on the test machines
    assert code == 0 and "can run" in out


@pytest.fixture
def without_hub_lessons(monkeypatch):
    """The per-lesson plans are covered below; skip them where a test looks elsewhere."""
    monkeypatch.setattr(doctor, "_check_lessons", lambda report, machine: None)


def test_missing_toy_checkpoints_fail_with_a_fix(monkeypatch, without_hub_lessons):
    monkeypatch.setattr(toy, "available", lambda: ["clip"])
    report = doctor.collect()
    failed = [c for c in report.checks if c.status == doctor.FAIL]
    assert [c.name for c in failed] == ["toy checkpoints"]
    assert "siglip" in failed[0].detail and "build-toy-models" in failed[0].fix
    assert not report.can_run
    assert doctor.run() == 1


def test_old_transformers_is_a_failure(monkeypatch, without_hub_lessons):
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda d: "4.57.1" if d == "transformers" else real(d))
    report = doctor.collect()
    check = next(c for c in report.checks if c.name == "transformers")
    assert check.status == doctor.FAIL and "transformers>=5" in check.fix


def test_profile_line_explains_auto_offline(monkeypatch, without_hub_lessons):
    monkeypatch.delenv("VLM_COURSE_PROFILE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check = next(c for c in doctor.collect().checks if c.name == "profile")
    assert "auto -> 'toy'" in check.detail and "HF_HUB_OFFLINE" in check.detail


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "vlm_course.cli", "doctor"], capture_output=True, text=True, timeout=300)
    assert "transformers" in proc.stdout and "lesson 04 " in proc.stdout
    assert proc.returncode in (0, 1)
    assert ("can run" in proc.stdout) == (proc.returncode == 0)


def test_lessons_list_what_auto_loads_here(monkeypatch):
    from vlm_course.sizes.fit import SIMULATED, Machine

    monkeypatch.setenv("VLM_COURSE_PROFILE", "auto")
    monkeypatch.setattr(Machine, "detect", classmethod(lambda cls: SIMULATED["16 GB laptop (CPU)"].with_cache(False)))
    checks = {c.name: c for c in doctor.collect().checks}
    assert checks["lesson 05"].status == doctor.OK
    assert checks["lesson 05"].detail == ("auto: llava-hf/llava-interleave-qwen-0.5b-hf (fp32, 4.0 GiB, download 1.7 GB); "
                                          "toy llava-next (fp32, 4 MiB)")
    assert checks["lesson 01"].detail.startswith("auto: openai/clip-vit-base-patch32 (fp32, 1.1 GiB, download 607 MB)")


def test_hub_profile_offline_with_empty_cache_fails_with_the_fix(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VLM_COURSE_PROFILE", "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(toy, "available", lambda: list(toy.TOY_NAMES))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] profile" in out and "no course checkpoint is in the Hugging Face cache" in out
    assert "fix: run `vlm-course download --lesson 1` while online" in out
    assert "The course can run on this machine." not in out and "Fix the FAIL lines" in out


def test_hub_profile_on_a_machine_too_small_does_not_advise_a_download(monkeypatch):
    from vlm_course.sizes.fit import SIMULATED, Machine

    monkeypatch.setenv("VLM_COURSE_PROFILE", "hub")
    monkeypatch.setattr(Machine, "detect", classmethod(lambda cls: SIMULATED["16 GB laptop (CPU)"].with_cache(True)))
    lesson = {c.name: c for c in doctor.collect().checks}["lesson 06"]
    assert lesson.status == doctor.FAIL and "so the hub profile cannot load it on" in lesson.detail
    assert lesson.fix.startswith("a download cannot help: use the default profile")
    assert "download --lesson" not in lesson.fix
