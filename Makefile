# Two commands on a fresh machine: `make run` (the portal on http://localhost:5000 with the
# embedded defaults) and `make test` (the whole suite). Both build what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ACAPY_VENV := .venv-acapy
PORT ?= 5000
SERVICES_UP := ../shared/bin/services-up
VENDOR := src/issuer/static/vendor/VERSIONS.json
OIDC_PROVIDER := tests/support/oidc/node_modules/.package-lock.json
PUSHER_CLIENT := tests/support/pusher/node_modules/.package-lock.json

.PHONY: run test install acapy browser migrate lint typecheck bench clean

$(BIN)/activate: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $(BIN)/activate

# The browser bundles the pages serve (Swagger UI, ReDoc): pinned in assets/package-lock.json,
# fetched by npm ci (integrity-checked), copied into the package's static files.
$(VENDOR): assets/package.json assets/package-lock.json assets/vendor.py
	cd assets && npm ci --silent
	$(PYTHON) assets/vendor.py

install: $(BIN)/activate $(VENDOR)

# The local OpenID Connect provider of the browser tests (the oidc-provider package, pinned in
# tests/support/oidc/package-lock.json), fetched by npm ci (integrity-checked).
$(OIDC_PROVIDER): tests/support/oidc/package.json tests/support/oidc/package-lock.json
	cd tests/support/oidc && npm ci --silent

# The real Pusher Channels client of the realtime tests (the pusher-js package, pinned in
# tests/support/pusher/package-lock.json), fetched by npm ci (integrity-checked).
$(PUSHER_CLIENT): tests/support/pusher/package.json tests/support/pusher/package-lock.json
	cd tests/support/pusher && npm ci --silent

# ACA-Py runs in its own virtual environment: acapy-agent needs Python >= 3.13; on older
# interpreters the 0.12 line (aries-cloudagent[askar]) runs the same flow.
$(ACAPY_VENV)/bin/aca-py:
	@py313=""; \
	for c in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.1[3-9]*/bin/python3 2>/dev/null) python3.13 python3; do \
	  if "$$c" -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null; then py313="$$c"; break; fi; \
	done; \
	if [ -n "$$py313" ]; then \
	  echo "ACA-Py 1.7.0 on $$py313"; \
	  "$$py313" -m venv $(ACAPY_VENV) && $(ACAPY_VENV)/bin/pip install -q "acapy-agent==1.7.0"; \
	else \
	  echo "ACA-Py 0.12.8 on python3.11 (no Python 3.13 found)"; \
	  python3.11 -m venv $(ACAPY_VENV) && $(ACAPY_VENV)/bin/pip install -q "aries-cloudagent[askar]==0.12.8"; \
	fi

acapy: $(ACAPY_VENV)/bin/aca-py

# Debian's Chromium for the browser tests (Playwright cannot download its own browser here),
# docker-compose, whose offline `config` command validates compose.yaml (there is no engine),
# zbar-tools, whose zbarimg reads the MFA QR codes back in the tests, and prometheus, whose
# promtool checks deploy/monitoring's configuration and tests its alerts.
browser:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v zbarimg >/dev/null || missing="$$missing zbar-tools"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

.env:
	cp .env.example .env

migrate: install .env
	$(BIN)/alembic upgrade head

run: install acapy .env migrate
	PORT=$(PORT) $(BIN)/python -m issuer.serve --config hypercorn.toml --bind 0.0.0.0:$(PORT) 'issuer:create_app()'

test: install acapy browser $(OIDC_PROVIDER) $(PUSHER_CLIENT)
	@if [ -x $(SERVICES_UP) ]; then $(SERVICES_UP); fi
	$(BIN)/ruff check
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check

typecheck: install
	$(BIN)/mypy

# wrk (Debian's package) is the load generator of the API benchmarks (bench.loadgen, in
# Python, costs the 2 cores more when it is missing).
bench: install acapy
	@if ! command -v wrk >/dev/null; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	fi
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(ACAPY_VENV) .pytest_cache assets/node_modules src/issuer/static/vendor \
	  tests/support/oidc/node_modules tests/support/pusher/node_modules
