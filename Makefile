# Two commands do all the set-up: `make demo` (the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.skipit-installed

.PHONY: demo test bounds install wheel-check clean-venv

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

# the default demo model ("demo") on all its bundled test questions (the default --samples 4096 takes
# all 2872: 144 images for the statistics, 215 to verify); the learn step measures every candidate on
# 128 statistics questions (16 images) instead of all 1152, and batches of 64 run faster on a CPU:
# together they keep a 16-layer run near a minute (benchmarks/README.md: what the smaller learn sample costs)
demo: $(STAMP)
	$(BIN)/skipit certify --learn-samples 128 --batch-size 64 --out skipit-demo-output

bounds: $(STAMP)
	$(BIN)/skipit bounds

test: $(STAMP)
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

# The package as users get it: build the sdist and, from it, the wheel; check the wheel holds
# every tracked file under skipit/; install it into a fresh venv and run it from a directory
# outside the source tree, so nothing can be imported from the checkout. torch comes first, as
# above, but linked from $(VENV) (the same pinned wheel; unpacking it again would double the
# check's time); every other dependency is installed for real, by $(VENV)'s pip (the fresh venv
# gets none), without byte-compiling.
WHEEL_CHECK := build/wheel-check
wheel-check: $(STAMP)
	rm -rf $(WHEEL_CHECK) && mkdir -p $(WHEEL_CHECK)/run
	$(BIN)/pip install --quiet 'build>=1.2' 'setuptools>=77'
	$(BIN)/python -m build --no-isolation --outdir $(WHEEL_CHECK)/dist . > $(WHEEL_CHECK)/build.log 2>&1 \
	    || { cat $(WHEEL_CHECK)/build.log; exit 1; }
	$(BIN)/python .ci/check_wheel.py $(WHEEL_CHECK)/dist/skipit-*.whl
	$(PY) -m venv --without-pip $(WHEEL_CHECK)/venv
	$(BIN)/python .ci/link_dist.py torch $(WHEEL_CHECK)/venv
	$(BIN)/pip --python $(WHEEL_CHECK)/venv/bin/python install --quiet --no-compile \
	    "$$(ls $(WHEEL_CHECK)/dist/skipit-*.whl)[empirical]"
	cd $(WHEEL_CHECK)/run && export PATH="$(CURDIR)/$(WHEEL_CHECK)/venv/bin:$$PATH" HF_HUB_OFFLINE=1 \
	    OMP_NUM_THREADS=1 && unset PYTHONPATH && \
	  test "$$(skipit --version)" = "skipit $$(ls ../dist/skipit-*.whl | sed 's/.*skipit-\([^-]*\)-.*/\1/')" && \
	  python -c "import sys, skipit.theory; assert skipit.__file__.startswith(sys.prefix), skipit.__file__; \
	    assert 'torch' not in sys.modules" && \
	  skipit certify --samples 16 --out certify-out --no-progress > certify.log && \
	  python -c "import json; c = json.load(open('certify-out/certificate.json')); \
	    assert c['schema'].startswith('skipit.certificate/') and c['model']['source'] == 'demo', c['model']"
	@echo "wheel-check: $$(ls $(WHEEL_CHECK)/dist) installed and ran from outside the source tree"

clean-venv:
	rm -rf $(VENV)
