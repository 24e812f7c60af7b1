# Two commands run the whole course: `make lab` and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vlm-course-installed
# setuptools prints an "Editable installation" banner even under pip --quiet
QUIET_EDITABLE := ignore:Editable installation:UserWarning

.PHONY: lab test test-unit test-notebooks check notebook-filter lint toy-models slides clean-venv

# Optional, before the first run: TORCH_INDEX=https://download.pytorch.org/whl/cpu installs PyTorch's
# CPU-only wheels first (about 4 GB smaller .venv; no CUDA libraries).
TORCH_INDEX ?=

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet torch torchvision --index-url $(TORCH_INDEX))
	PYTHONWARNINGS="$(QUIET_EDITABLE)" $(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Notebooks stay clean in git while you work: .gitattributes sends *.ipynb through the nbstripout
# filter, set up here for this clone (nbstripout-fast: the same stripping, ~100x faster than
# nbstripout's Python start-up per notebook). Git then stores, diffs and compares notebooks without
# outputs, execution counts, widget state or the Python version: only your own edits show as changes.
# Nothing happens outside a git clone.
NBSTRIP := "$(abspath $(VENV))/bin/nbstripout-fast" --extra-keys metadata.language_info.version

notebook-filter:
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git config filter.nbstripout.clean '$(NBSTRIP)' && \
		git config filter.nbstripout.smudge cat; \
	fi

# Extra JupyterLab flags, e.g. LAB_ARGS="--no-browser --port 8890"; root (containers) needs --allow-root.
LAB_ARGS ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# After each save, a notebook that differs from git's copy only by what the filter strips is marked
# unchanged (git compares sizes first): see vlm_course/notebook_git.py.
LAB_HOOK := --ContentsManager.post_save_hook=vlm_course.notebook_git.refresh_after_save

lab: $(STAMP) notebook-filter
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_HOOK) $(ROOT_FLAG) $(LAB_ARGS)

# Unit tests, exercise tests (against solutions/) and the notebooks under nbval,
# all on the offline toy profile.
test: $(STAMP) notebook-filter
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

# Slides from the lessons: one reveal.js HTML per notebook (a slide per "##" section) and an
# index.html, in build/slides/ (git-ignored). SLIDES_EXECUTE=1 runs each lesson first (toy profile)
# so the slides show outputs; SLIDES_NOTEBOOKS=notebooks/01_clip.ipynb for one lesson.
SLIDES_DIR ?= build/slides
SLIDES_NOTEBOOKS ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
SLIDES_EXECUTE ?=

slides: $(STAMP)
	$(PY) -m vlm_course.slides --out $(SLIDES_DIR) $(if $(SLIDES_EXECUTE),--execute) $(SLIDES_NOTEBOOKS)

clean-venv:
	rm -rf $(VENV)
