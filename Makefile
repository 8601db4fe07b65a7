# Two commands do all the set-up: `make demo` (the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.skipit-installed

.PHONY: demo test bounds install clean-venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned to the CPU wheel on disk, so the `torch>=2.4,<3` range of the
# extras is already met and pip never pulls a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/skipit certify --out skipit-demo-output

bounds: $(STAMP)
	$(BIN)/skipit bounds

test: $(STAMP)
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

clean-venv:
	rm -rf $(VENV)
