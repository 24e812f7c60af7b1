# Two commands run the whole course: `make lab` and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vlm-course-installed

.PHONY: lab test test-unit test-notebooks check lint toy-models clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Extra JupyterLab flags, e.g. LAB_ARGS="--no-browser --port 8890"; root (containers) needs --allow-root.
LAB_ARGS ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

# Unit tests, exercise tests (against solutions/) and the notebooks under nbval,
# all on the offline toy profile.
test: $(STAMP)
	HF_HUB_OFFLINE=1 VLM_COURSE_PROFILE=toy $(PY) -m pytest tests vlm_course/exercise_tests notebooks --nbval-lax --nbval-cell-timeout=240

test-unit: $(STAMP)
	HF_HUB_OFFLINE=1 VLM_COURSE_PROFILE=toy $(PY) -m pytest tests vlm_course/exercise_tests

test-notebooks: $(STAMP)
	HF_HUB_OFFLINE=1 VLM_COURSE_PROFILE=toy $(PY) -m pytest notebooks --nbval-lax --nbval-cell-timeout=240

# The learner's self-check of exercises/: points per test, hints, and where to start.
check: $(STAMP)
	$(VENV)/bin/vlm-course check

lint: $(STAMP)
	$(VENV)/bin/ruff check vlm_course tests solutions exercises benchmarks

toy-models: $(STAMP)
	$(VENV)/bin/vlm-course build-toy-models

clean-venv:
	rm -rf $(VENV)
