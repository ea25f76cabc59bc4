# uivlm workbook: `make run` runs the whole workbook, `make test` runs the test suite.
# Both set up everything they use first (idempotent): a local virtual environment in .venv with the
# pinned torch/torchvision pair and the project, plus Debian's Chromium, which 04's live MiniWoB++
# episodes, DATA_SOURCE=miniwob and the JupyterLab browser test drive.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN_DIR ?= runs/default
# Extra workbook arguments, e.g. ARGS="-f params.yaml" or ARGS="-p MAX_STEPS 20"
ARGS   ?=
STAMP  := $(VENV)/.uivlm-installed
# apt-get needs root: run it directly as root, through sudo otherwise.
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup system-deps run test lab clean-notebooks

setup: $(STAMP)

# Debian's Chromium and its driver: MiniWoB++ environments and the JupyterLab browser test use them.
system-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision are installed as a tested pair first, so nothing else picks a torch.
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

run: setup system-deps
	$(PY) -m uivlm_helpers.workbook --run-dir $(RUN_DIR) $(ARGS)

# Two pytest-xdist workers, one test file each at a time (module fixtures such as a whole executed workbook
# run once); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: setup system-deps
	$(PY) -m pytest -q -ra $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean-notebooks: setup
	$(PY) -m uivlm_helpers.workbook.nbclean notebooks/*.ipynb
