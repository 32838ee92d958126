# Needs only Python 3.11+, Java 17+ and Maven on PATH; no Docker.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKACTL := $(VPY) tools/kafka/kafkactl.py
KAFKA_PORT ?= 9092
KAFKA_DATADIR ?= .eoflow/kafka
PYTEST_ARGS ?=

.PHONY: venv test lint typecheck kafka-libs demo kafka-start kafka-stop kafka-status soak bench clean

venv: $(STAMP)

# Re-installs whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

# Download the broker jars once (Maven Central -> ~/.cache/eoflow), outside any test timeout:
# the default 3.9 and the 4.x release (tests/integration/test_launcher_kafka4.py always
# starts one; make test-kafka4 runs everything on it).
kafka-libs:
	@$(PYTHON) tools/kafka/kafkactl.py libs --all >/dev/null

lint: venv
	$(VENV)/bin/ruff check eoflow tests apps tools

typecheck: venv
	$(VENV)/bin/mypy

test: venv kafka-libs lint typecheck
	$(VENV)/bin/pytest -q --durations=15 $(PYTEST_ARGS)

# The integration and e2e suites on Kafka 4.x (pom.xml's kafka4.version): every broker,
# cluster and SASL broker the fixtures start. `make test` stays on 3.9.
.PHONY: test-kafka4
test-kafka4: venv kafka-libs
	EOFLOW_KAFKA_VERSION=4 $(VENV)/bin/pytest -q --durations=15 tests/integration tests/e2e \
		$(PYTEST_ARGS)

demo: venv kafka-libs
	$(VPY) tools/demo.py

kafka-start: venv kafka-libs
	$(KAFKACTL) start --port $(KAFKA_PORT) --datadir $(KAFKA_DATADIR)

kafka-stop:
	$(PYTHON) tools/kafka/kafkactl.py stop --datadir $(KAFKA_DATADIR)

kafka-status:
	$(PYTHON) tools/kafka/kafkactl.py status --datadir $(KAFKA_DATADIR)

# Long exactly-once run under chaos (own broker); e.g. make soak SOAK_MINUTES=2 SOAK_RECORDS=20000
soak: venv kafka-libs
	$(VPY) -m tests.harness.soak --minutes $(or $(SOAK_MINUTES),30) --records $(or $(SOAK_RECORDS),1000000) $(SOAK_ARGS)

# The soak on a three-broker KRaft cluster of its own (RF 3, min.insync.replicas 2): worker
# kills as above plus a cluster fault every ~45 s (leader, transaction or group coordinator
# killed, two of three nodes down, rolling restart, network faults through a proxy) and
# atomicity cuts; e.g. make soak-cluster SOAK_MINUTES=10 SOAK_RECORDS=60000
.PHONY: soak-cluster
soak-cluster: venv kafka-libs
	$(VPY) -m tests.harness.soak --cluster --minutes $(or $(SOAK_MINUTES),30) --records $(or $(SOAK_RECORDS),180000) $(SOAK_ARGS)

# Peers (faust-streaming, Quix Streams) come from the `bench` extra, pinned by
# bench/constraints.txt, in their own venv so the test venv never sees them.
BENCH_VENV := bench/.venv
BENCH_RECORDS ?= 1000000
BENCH_REPEATS ?= 3
BENCH_ARGS ?=

$(BENCH_VENV)/.installed: pyproject.toml bench/constraints.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[bench]' -c bench/constraints.txt
	@touch $@

# Kafka Streams (bench/kstreams, Java 17 + Maven): built into bench/kstreams/target, and
# rebuilt only when its pom or sources change.
.PHONY: bench-kstreams
bench-kstreams:
	$(PYTHON) -m bench.kstreams_build

# Starts its own broker on a free port; writes bench-results/<stamp>/, docs/benchmarks.{md,png}.
bench: kafka-libs $(BENCH_VENV)/.installed bench-kstreams
	$(BENCH_VENV)/bin/python -m bench.run --records $(BENCH_RECORDS) \
		--repeats $(BENCH_REPEATS) $(BENCH_ARGS)

# eoflow's operators and windows against its own passthrough and count (prints a table).
.PHONY: bench-ops
bench-ops: kafka-libs $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m bench.ops --records $(or $(OPS_RECORDS),200000) \
		--repeats $(or $(OPS_REPEATS),3)

# Table restore and restart against Kafka Streams (own broker; prints a table), e.g.
# make bench-restore RESTORE_KEYS=100000 RESTORE_REPEATS=1
.PHONY: bench-restore
bench-restore: kafka-libs $(BENCH_VENV)/.installed bench-kstreams
	$(BENCH_VENV)/bin/python bench/restore.py --keys $(or $(RESTORE_KEYS),1000000) \
		--repeats $(or $(RESTORE_REPEATS),3)

# Keeps the jar cache (~/.cache/eoflow); delete that by hand to force a re-download.
clean:
	-@$(PYTHON) tools/kafka/kafkactl.py stop --datadir $(KAFKA_DATADIR) >/dev/null 2>&1
	rm -rf $(VENV) .eoflow build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +

# Every harness scenario against eoflow and faust-streaming (exactly_once), one table
# (docs/reliability.md). Optional, not part of `make test`; starts its own broker.
# e.g. make reliability-faust RELIABILITY_RECORDS=3000 RELIABILITY_ARGS='--scenario poison'
RELIABILITY_RECORDS ?= 3000
RELIABILITY_SEED ?= 1
RELIABILITY_ARGS ?=
.PHONY: reliability-faust
reliability-faust: venv kafka-libs $(BENCH_VENV)/.installed
	$(VPY) -m tests.harness.compare --system eoflow --system faust \
		--records $(RELIABILITY_RECORDS) --seed $(RELIABILITY_SEED) $(RELIABILITY_ARGS)
