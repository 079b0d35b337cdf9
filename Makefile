# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# `make test-services`: the suite on the machine's PostgreSQL and Redis.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/facerec
TEST_REDIS_URL ?= redis://127.0.0.1:6379/5
# face_recognition 1.3, the library face_engine.compat replaces: installed beside ours (without its
# `dlib` requirement: dlib-bin provides it) for the benchmark, and its sdist kept for its own unit
# tests, which tests/compat/test_upstream_suite.py runs against face_engine.compat.
UPSTREAM_SDIST := var/upstream/face_recognition-1.3.0.tar.gz

.PHONY: setup run serve worker cameras test test-services test-faults test-hostile fuzz loadtest bench-delivery bench-duplicates bench-compat lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps face_recognition==1.3.0
	touch $(STAMP)

$(UPSTREAM_SDIST): | $(STAMP)
	$(BIN)/pip download --quiet --no-deps --no-binary :all: -d $(dir $(UPSTREAM_SDIST)) face_recognition==1.3.0

setup: $(STAMP) $(UPSTREAM_SDIST)

## Set everything up and serve http://$(HOST):$(PORT) (HTTP and WebSockets, uvicorn) on SQLite,
## in-process cache and jobs, with one camera worker beside it (stopped with the server). Both write
## their Prometheus metrics into one fresh folder: /metrics shows the camera worker's frames too.
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_dev_superuser
	export PROMETHEUS_MULTIPROC_DIR=$$(mktemp -d -t facerec-prometheus-XXXXXX); \
	$(BIN)/python manage.py run_cameras & CAMERAS=$$!; \
	trap 'kill $$CAMERAS 2>/dev/null; wait $$CAMERAS; rm -rf "$$PROMETHEUS_MULTIPROC_DIR"' EXIT INT TERM; \
	$(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --ws-max-size 16777216

## Production camera worker: claims cameras through database leases and records their events (run
## several, on one machine or many, on PostgreSQL; `make run` starts one for development).
cameras: $(STAMP)
	$(BIN)/python manage.py run_cameras

## Production: migrate, collect static files, serve with gunicorn (gunicorn.conf.py). Needs at
## least SECRET_KEY and ALLOWED_HOSTS; see README's configuration table.
serve worker cameras: export DJANGO_SETTINGS_MODULE := config.settings.production
serve: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput
	$(BIN)/gunicorn -c gunicorn.conf.py

## Production Celery worker for background jobs (CELERY_BROKER_URL, CELERY_WORKER_CONCURRENCY).
worker: $(STAMP)
	@test -n "$$CELERY_BROKER_URL" || { echo "make worker: set CELERY_BROKER_URL (redis://… or amqp://…)" >&2; exit 1; }
	$(BIN)/celery -A config worker

## Set everything up and run the whole test suite.
test: $(STAMP) $(UPSTREAM_SDIST)
	$(BIN)/python -m pytest -q

## The test suite on PostgreSQL and Redis (Django creates and drops test_<name>), less the parts
## that touch neither: the engine (tests/engine), the compatibility library (tests/compat) and the
## fuzz harnesses (their own throw-away SQLite), which `make test` has run already.
test-services: $(STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest -q \
		--ignore=tests/engine --ignore=tests/compat --ignore=tests/fuzz

## Fault tests (left out of `make test`): a Celery worker killed in a job, Redis stopped and frozen,
## PostgreSQL stopped and started under an API server and a camera worker (private instances).
test-faults: $(STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest -q -rP tests/faults

## Hostile uploads: 1,000+ generated cases (tests/hostile/corpus.py) sent to recognise, batch, verify,
## enrolment, the live WebSocket and a camera worker of a real gunicorn server (SQLite, throw-away);
## prints per family the answers, server errors, peak memory and slowest answer; exit 0 only if every
## answer has the documented shape and code, no 5xx, the server survives and memory stays bounded.
test-hostile: $(STAMP)
	$(BIN)/python tests/hostile/run.py $(HOSTILE_ARGS)

## Fuzzing (atheris): each harness of tests/fuzz for FUZZ_SECONDS, its corpus kept and grown in
## var/fuzz/<harness>/corpus, crash inputs in var/fuzz/<harness>/ (`make test` runs each for 20 s).
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	@for h in fuzz_dat fuzz_decode fuzz_multipart fuzz_websocket; do \
	  mkdir -p var/fuzz/$$h/corpus; \
	  $(BIN)/python tests/fuzz/$$h.py -max_total_time=$(FUZZ_SECONDS) -timeout=60 -rss_limit_mb=3072 \
	    -print_final_stats=1 -artifact_prefix=var/fuzz/$$h/ var/fuzz/$$h/corpus || exit 1; \
	done

## Load test: gunicorn (production settings), PostgreSQL, Redis and a Celery worker on loopback under
## 50 recognising and 5 enrolling clients for 60 s; exit 0 only if every check passes (loadtest/run.py).
## Options: LOADTEST_ARGS="--seconds 20 --clients 50 --enrollers 5".
loadtest: $(STAMP)
	$(BIN)/python loadtest/run.py $(LOADTEST_ARGS)

## Benchmark of event delivery: events per second through MQTT (the broker on 127.0.0.1:1883) and
## webhooks (a receiver on loopback), and the delay from decision to delivery (loadtest/delivery.py).
bench-delivery: $(STAMP)
	$(BIN)/python loadtest/delivery.py $(BENCH_ARGS)

## Benchmark of the duplicate-pairs pass: 10,000 people (real LFW and project embeddings, synthetic ones
## fitted on them) with 20 planted duplicates; time, pairs found, planted found (loadtest/duplicates.py).
bench-duplicates: $(STAMP)
	$(BIN)/python -m loadtest.duplicates $(BENCH_ARGS)

## Benchmark of face_engine.compat against face_recognition 1.3 (dlib), function by function and
## the command lines, on the same photos (face_engine/bench/compat.py; about two minutes on 2 cores).
bench-compat: $(STAMP)
	$(BIN)/python -m face_engine.bench.compat $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy face_engine

clean:
	rm -rf $(VENV) var .pytest_cache
