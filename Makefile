# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install migrate seed bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable

seed: migrate
	$(PY) manage.py seed_demo --base-url http://$(HOST):$(PORT)

# Web server and task cluster together on the embedded default; Ctrl-C stops both.
run: seed
	@echo "Starting gunicorn on http://$(HOST):$(PORT)/ and the django-q2 cluster (Ctrl-C stops both)"
	@trap 'trap - INT TERM EXIT; kill $$qpid $$wpid 2>/dev/null; wait' INT TERM EXIT; \
	$(PY) manage.py qcluster & qpid=$$!; \
	$(VENV)/bin/gunicorn o2o_site.wsgi --bind $(HOST):$(PORT) --workers 2 --threads 8 --access-logfile - & wpid=$$!; \
	wait -n

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: install
	$(PY) bench/ledger.py
	$(PY) bench/api.py
	$(PY) bench/bot.py

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .hypothesis
