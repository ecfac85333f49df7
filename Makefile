# pyhv — the two commands a new user needs are `make demo` and `make test`.
# Both install what is missing first (Debian packages with apt-get, Python packages in .venv).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := qemu-system-x86 qemu-utils ovmf seabios busybox-static e2fsprogs cpio \
	iproute2 ipxe-qemu python3-venv python3-dev gcc make wrk
PYTEST_ARGS ?=

.PHONY: all deps system-deps python-deps lint typecheck test test-quick demo bench guest-kit clean

all: test

deps: system-deps python-deps

# Installs only the Debian packages that are missing, so a second run does nothing.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "pyhv: error: run as root to install:$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

python-deps: $(VENV)/.installed

lint: python-deps
	$(BIN)/ruff check pyhv tests bench
	$(BIN)/ruff format --check pyhv tests bench

typecheck: python-deps
	$(BIN)/mypy

guest-kit: deps
	$(BIN)/pyhv guest-kit build

test: deps lint typecheck guest-kit
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast subset: no guest boots, no long loops.
test-quick: deps
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

demo: deps guest-kit
	$(BIN)/python -m pyhv.demo

bench: deps guest-kit
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
