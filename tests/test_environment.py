"""environment.yml (conda) and pyproject.toml (pip) describe the same environment."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_parses_and_names_the_same_packages():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "vlm-course"
    deps = env["dependencies"]
    assert any(str(d).startswith("python") for d in deps) and "pip" in deps
    pip_reqs = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-e .[dev]" in pip_reqs
    project = _pyproject()["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert sorted(r for r in pip_reqs if not r.startswith("-e")) == sorted(expected)
    assert {_name(r) for r in expected} >= {
        "transformers", "torch", "torchvision", "pillow", "requests", "accelerate", "safetensors", "tokenizers",
        "sentencepiece", "huggingface-hub", "bitsandbytes", "ipywidgets", "matplotlib", "tqdm",
        "pytest", "nbval", "jupyterlab", "ruff",
    }


def test_transformers_is_pinned_to_major_5_and_ranges_not_pins():
    deps = _pyproject()["project"]["dependencies"]
    assert [d for d in deps if re.fullmatch(r"transformers(\[[a-z,-]+\])?>=5,<6", d)], "transformers 5.x (extras allowed)"
    assert not [d for d in deps if "==" in d], "declare ranges, not this machine's versions"


def test_console_command_and_ci_use_the_readme_test_command():
    assert _pyproject()["project"]["scripts"]["vlm-course"] == "vlm_course.cli:main"
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make lab" in readme
