# uivlm workbook: `make run` runs the whole workbook, `make test` runs the test suite.
# Both set up everything first (idempotent): a local virtual environment in .venv with the pinned
# torch/torchvision pair and the project, plus the Debian packages the tests need.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN_DIR ?= runs/default
# Extra workbook arguments, e.g. ARGS="-f params.yaml" or ARGS="-p MAX_STEPS 20"
ARGS   ?=
STAMP  := $(VENV)/.uivlm-installed

.PHONY: setup system-deps run test lab clean-notebooks

setup: $(STAMP)

# Debian's Chromium and its driver: MiniWoB++ environments and the JupyterLab browser test use them.
system-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq python3-venv)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision are installed as a tested pair first, so nothing else picks a torch.
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

run: setup
	$(PY) -m uivlm_helpers.workbook --run-dir $(RUN_DIR) $(ARGS)

test: setup system-deps
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean-notebooks: setup
	$(PY) -m uivlm_helpers.nbclean notebooks/*.ipynb
