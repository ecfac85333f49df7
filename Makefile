# pyhv — the two commands a new user needs are `make demo` and `make test`.
# Both install what is missing first (Debian packages with apt-get, Python packages in .venv).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := qemu-system-x86 qemu-utils ovmf seabios busybox-static e2fsprogs cpio \
	iproute2 ipxe-qemu python3-venv python3-dev gcc make wrk
PYTEST_ARGS ?=

.PHONY: all deps system-deps host-setup python-deps lint typecheck test test-quick demo bench guest-kit clean

all: test

deps: system-deps host-setup python-deps

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

# Guest RAM goes on 2 MiB pages where the kernel can hand them out, as Hyper-V backs it with
# large pages (pyhv/host/hugepages.py). This lets the kernel hand out surplus ones, up to the
# host's memory, only while a VM maps them. Written once to a file the administrator owns
# (0 there keeps guest RAM on 4 KiB pages), then applied from it on every run.
SYSCTL_CONF := /etc/sysctl.d/60-pyhv.conf
host-setup:
	@if [ "$$(id -u)" = 0 ]; then \
		if [ ! -e $(SYSCTL_CONF) ]; then \
			mkdir -p $$(dirname $(SYSCTL_CONF)); \
			pages=$$(awk '/^MemTotal:/ {print int($$2 / 2048)}' /proc/meminfo); \
			printf '%s\n' "# pyhv: guest RAM on 2 MiB pages while the host has memory (0: 4 KiB pages)" \
				"vm.nr_overcommit_hugepages = $$pages" > $(SYSCTL_CONF); \
		fi; \
		value=$$(awk -F= '/^vm.nr_overcommit_hugepages/ {gsub(/ /, "", $$2); print $$2}' $(SYSCTL_CONF)); \
		[ -z "$$value" ] || echo "$$value" > /proc/sys/vm/nr_overcommit_hugepages 2>/dev/null || \
			echo "pyhv: cannot set vm.nr_overcommit_hugepages here: guest RAM stays on 4 KiB pages" >&2; \
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
