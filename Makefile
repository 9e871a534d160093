# cni-calico: `make demo` runs the main job, `make test` passes every test tier.
# Both install what they need on a fresh Debian machine: system packages (apt) and a virtualenv.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# etcd-server: the datastore the tests and the demo start privately; iproute2, iputils-ping:
# namespaces and real packets; containernetworking-plugins: host-local, portmap, tuning;
# podman, runc, busybox-static, iptables, util-linux (nsenter): the real-runtime test;
# bird2: the BGP daemon calico-node drives; python3-venv: the virtualenv.
SYSTEM_PACKAGES := etcd-server etcd-client iproute2 iputils-ping containernetworking-plugins \
	podman runc busybox-static iptables util-linux bird2 python3-venv

.PHONY: all system-deps venv test test-unit demo demo-clean clean

all: test

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: system-deps $(VENV)/.installed

# All tiers: pure unit tests, real etcd, (later) namespaces and BIRD. No tests collected is a failure.
test: venv
	@$(BIN)/pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test-unit: venv
	$(BIN)/pytest -q -m "not etcd and not root and not bird"

# The multi-host lab: HOSTS simulated hosts (network namespaces) with calico-node + BIRD each,
# PODS pods per host, then node status, routes, blocks and cross-host pings. Cleans up after itself.
HOSTS ?= 2
PODS  ?= 2
demo: venv
	$(BIN)/python -m cni_calico.lab.demo --hosts $(HOSTS) --pods $(PODS)

# Only needed after a demo was killed: removes its namespaces, processes (by PID) and etcd.
demo-clean: venv
	$(BIN)/python -m cni_calico.lab.demo --clean

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
