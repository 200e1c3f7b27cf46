# fpgacsp: one entry point for setting up, running and testing. Every install step lives here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROTO_SRC := proto/src
PROTOS := $(wildcard $(PROTO_SRC)/fpgacsp_proto/v1/*.proto)
STUBS := $(PROTOS:.proto=_pb2.py)
# bash with pipefail: a pip install piped through the noise filter below still fails when pip fails.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# pip warns once per package for every configured find-links/index location that lacks it ("Location ... is
# ignored: it is neither a file nor a directory"): pages of noise from the host's pip configuration, not from
# this project. Only that one message is dropped; every other warning and error still shows.
PIP := $(BIN)/pip install -q --disable-pip-version-check
PIP_QUIET := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: all venv proto regmap dashboard system-deps run test lint typecheck pytest bench rtl-solve rtl-long synth clean

all: venv

venv: $(VENV)/.installed $(VENV)/.kernel

# Pinned third-party packages first, then stubs, then our three distributions in editable mode.
$(VENV)/.installed: requirements/dev.txt proto/pyproject.toml daemon/pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/dev.txt 2>&1 | $(PIP_QUIET)
	$(MAKE) proto regmap
	$(PIP) --no-build-isolation --no-deps -e proto -e daemon -e client 2>&1 | $(PIP_QUIET)
	touch $@

# The fast core's numba kernel, compiled into numba's disk cache now (about 90 s, with a message), so no first
# solve or daemon start waits for it silently; again whenever the kernel's source changes.
$(VENV)/.kernel: $(VENV)/.installed daemon/src/fpgacspd/engine/_kernels.py
	$(BIN)/python -m fpgacspd.engine
	touch $@

proto: $(STUBS)

# Everything generated from the register map (fpga_bitstream/regmap/fpgacsp.rdl): the driver's Python
# definitions, the RTL register block, the C header, docs/regmap.md. tests/test_regmap.py catches staleness.
REGMAP_SRC := fpga_bitstream/regmap/fpgacsp.rdl fpga_bitstream/regmap/generate.py
REGMAP_OUT := daemon/src/fpgacspd/device/_regmap.py
regmap: $(REGMAP_OUT)

$(REGMAP_OUT): $(REGMAP_SRC)
	$(BIN)/python fpga_bitstream/regmap/generate.py

# The Grafana dashboard, generated with grafanalib (tests/e2e/test_e2e_prometheus.py catches staleness).
dashboard: venv
	$(BIN)/python deploy/grafana/dashboard.py

# Programs the tests run for real (Prometheus scrapes the daemon's metrics endpoint); Debian packages.
system-deps:
	bash scripts/install-system-deps.sh

# Stubs are generated, never committed (tests/test_generated.py catches staleness).
$(PROTO_SRC)/%_pb2.py: $(PROTO_SRC)/%.proto
	$(BIN)/python -m grpc_tools.protoc -I $(PROTO_SRC) --python_out=$(PROTO_SRC) --pyi_out=$(PROTO_SRC) \
		--grpc_python_out=$(PROTO_SRC) $<

# The main job: fpgacspd on the simulator, the visual-Sudoku training through it in regime b (learning from the
# solver alone: only blank cells labelled), the two-stage baseline beside it, then a clean stop.
run: venv
	BIN=$(BIN) bash scripts/run-main-job.sh --time-budget-s 180

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

pytest: venv system-deps
	$(BIN)/pytest

# The README's test command: lint, types, then every test.
test: lint typecheck pytest

bench: venv
	$(BIN)/python bench/engine.py

# A puzzle file through the simulated RTL engine, the CSV of `fpgacsp solve`: make rtl-solve FILE=... OUT=... [ARGS=...]
rtl-solve: venv
	$(BIN)/python fpga_bitstream/tb/rtl_solve.py $(FILE) --out $(OUT) $(ARGS)

# The long cosimulation: 10,000 random cases per engine configuration and 100 puzzles of every Sudoku file
rtl-long: venv
	FCSP_ENGINE_CASES=10000 FCSP_ENGINE_SUDOKU=100 $(BIN)/pytest -p no:cacheprovider --timeout 7200 -ra fpga_bitstream/tb/fcsp_engine

# Synthesis of the 9x9-Sudoku engine (LUT6 and ECP5 with place and route): fpga_bitstream/reports/
synth: venv
	$(BIN)/python fpga_bitstream/synth/synth.py

clean:
	rm -rf $(VENV) $(PROTO_SRC)/fpgacsp_proto/v1/*_pb2*.py $(PROTO_SRC)/fpgacsp_proto/v1/*_pb2*.pyi $(REGMAP_OUT) \
		fpga_bitstream/generated
