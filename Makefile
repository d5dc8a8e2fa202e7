# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
SEED_MEMBERS ?= 1000

.PHONY: run test e2e install migrate seed bench clean

# The demo: DEBUG (and with it the sandbox) on; the app itself starts safe (DEBUG off)
# and the secret key is a random one made once in var/ (settings.py).
migrate seed run: export DEBUG ?= 1

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0

seed: migrate
	$(PY) manage.py seed_demo --base-url http://$(HOST):$(PORT) --members $(SEED_MEMBERS)

# Web server and task cluster together on the embedded default; Ctrl-C stops both within
# seconds (gunicorn's quick shutdown on INT; the cluster finishes its current task).
# The access log keeps the path without its query string (%(U)s, where the default
# %(r)s has the whole URI) and no referer: /wechat/'s query string carries WeChat's
# signature, which does not cover the body; a log must not hand it out.
run: seed
	@echo "Starting gunicorn on http://$(HOST):$(PORT)/ and the django-q2 cluster (Ctrl-C stops both)"
	@trap 'trap - INT TERM EXIT; kill -INT $$wpid 2>/dev/null; kill -TERM $$qpid 2>/dev/null; wait' INT TERM EXIT; \
	$(PY) manage.py qcluster & qpid=$$!; \
	$(VENV)/bin/gunicorn o2o_site.wsgi --bind $(HOST):$(PORT) --workers 2 --threads 8 --graceful-timeout 2 --access-logfile - --access-logformat '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"' & wpid=$$!; \
	wait -n

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The deployment of docs/deploy.md booted for real (migrate, collectstatic, gunicorn,
# qcluster) and driven over HTTP: tests/e2e. SQLite unless E2E_DATABASE_URL (a PostgreSQL
# server) and E2E_REDIS_URL (a Redis database of its own) are set.
e2e: install
	$(VENV)/bin/pytest -m e2e tests/e2e $(PYTEST_ARGS)

bench: install
	$(PY) bench/ledger.py
	$(PY) bench/api.py
	$(PY) bench/bot.py
	$(PY) bench/notify.py

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .hypothesis
