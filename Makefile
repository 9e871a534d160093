# cni-calico: `make demo` runs the main job, `make test` passes the static checks and every test tier.
# Both install what they need on a fresh Debian machine: system packages (apt) and a virtualenv.

# Debian's own interpreter when there is one: it is built with PGO and LTO, and starts and runs
# about a fifth faster than a plain source build (which a `python3` earlier on PATH may be).
PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# etcd-server: the datastore the tests and the demo start privately; iproute2, iputils-ping:
# namespaces and real packets; containernetworking-plugins: host-local, portmap, tuning,
# loopback;
# podman, runc, busybox-static, iptables, util-linux (nsenter): the podman test; containerd (with
# runc and busybox-static): the CRI test;
# bird2: the BGP daemon calico-node drives; nftables: the policy and NAT dataplane calico-node
# programs; python3-venv: the virtualenv; libpython3-dev: the shared libpython PyInstaller bundles.
SYSTEM_PACKAGES := etcd-server etcd-client iproute2 iputils-ping nftables containernetworking-plugins \
	podman containerd runc busybox-static iptables util-linux bird2 python3-venv libpython3-dev

.PHONY: all system-deps venv build install lint test test-unit demo demo-clean bench clean

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
	$(BIN)/pip install -q -e '.[test,build]'
	touch $@

# A virtualenv made from another interpreter than $(PYTHON) is made again, and the executables
# frozen from it with it (a sub-make, so that the files are looked at after the removal).
venv: system-deps
	@if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print(sys.base_prefix)')" != \
	  "$$($(PYTHON) -c 'import sys; print(sys.base_prefix)')" ]; then \
	  echo "$(VENV) was made from another interpreter than $(PYTHON): making it again"; rm -rf $(VENV) dist/.built; fi
	@$(MAKE) --no-print-directory $(VENV)/.installed

# The frozen executables, one-dir: dist/cni-calico/cni-calico is calicoctl, calico-node,
# calico-kube-controllers or a standalone plugin by the name it is run as, and
# dist/cni-calico/client/calico-cni is the small client calico and calico-ipam point at
# (dist/<name> links).
# ONEFILE=1 builds a single self-unpacking file instead (slower to start: see README).
SOURCES := $(shell find cni_calico packaging -name '*.py' -o -name '*.spec') pyproject.toml
dist/.built: $(SOURCES) | venv
	rm -rf dist/cni-calico dist/cni-calico-client dist/client
	@printf 'GIT_COMMIT = "%s"\nBUILD_DATE = "%s"\n' "$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	  "$$(date -u +%Y-%m-%dT%H:%M:%S+0000)" > cni_calico/_build.py  # for `calicoctl version`
	ONEFILE=$(ONEFILE) $(BIN)/pyinstaller --noconfirm --clean --log-level WARN --distpath dist \
	  --workpath build/pyinstaller \
	  packaging/cni-calico.spec
	@if [ -d dist/cni-calico-client ]; then mv dist/cni-calico-client dist/cni-calico/client; fi
	@for n in calico calico-ipam calicoctl calico-node calico-kube-controllers; do \
	  if [ "$(ONEFILE)" = 1 ]; then ln -sfn cni-calico dist/$$n; \
	  else case $$n in calico|calico-ipam) t=client/calico-cni;; *) t=cni-calico;; esac; ln -sfn cni-calico/$$t dist/$$n; fi; \
	done
	@out=$$(CNI_COMMAND=VERSION dist/calico </dev/null) && echo "$$out" | grep -q '"supportedVersions"' \
	  || { echo "smoke test failed: CNI_COMMAND=VERSION dist/calico printed: $$out" >&2; exit 1; }
	@echo "built dist/calico, dist/calico-ipam, dist/calicoctl, dist/calico-node, dist/calico-kube-controllers" \
	  "(smoke test passed)"
	touch $@

build: venv dist/.built

# Every link is relative, so a tree staged under DESTDIR works where it lies and where it lands.
# make install [DESTDIR=...] [CNI_BIN_DIR=/opt/cni/bin] [BIN_DIR=/usr/local/bin]
#              [INSTALL_CONF=1 CNI_CONF_DIR=/etc/cni/net.d]
CNI_BIN_DIR  ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
BIN_DIR      ?= /usr/local/bin
install: build
	install -d $(DESTDIR)$(CNI_BIN_DIR) $(DESTDIR)$(BIN_DIR)
	rm -rf $(DESTDIR)$(CNI_BIN_DIR)/cni-calico
	cp -a dist/cni-calico $(DESTDIR)$(CNI_BIN_DIR)/cni-calico
	@full=cni-calico/cni-calico; client=cni-calico/client/calico-cni; \
	[ -d dist/cni-calico ] || { full=cni-calico; client=cni-calico; }; \
	for n in calico calico-ipam; do ln -sfn $$client $(DESTDIR)$(CNI_BIN_DIR)/$$n; done; \
	rel=$$(realpath -m --relative-to=$(BIN_DIR) $(CNI_BIN_DIR)/$$full); \
	for n in calicoctl calico-node calico-kube-controllers; do ln -sfn $$rel $(DESTDIR)$(BIN_DIR)/$$n; done
	@if [ "$(INSTALL_CONF)" = 1 ]; then install -d $(DESTDIR)$(CNI_CONF_DIR) && \
	  install -m 0644 examples/10-calico.conf $(DESTDIR)$(CNI_CONF_DIR)/10-calico.conf; fi
	@echo "installed into $(DESTDIR)$(CNI_BIN_DIR) and $(DESTDIR)$(BIN_DIR)"

# Static checks: ruff on the package and the tests, mypy (strict, settings in pyproject.toml) on the
# package. Both run, and either failing fails.
lint: venv
	@rc=0; $(BIN)/ruff check cni_calico tests || rc=1; $(BIN)/mypy || rc=1; exit $$rc

# The static checks, then all tiers: pure unit tests, real etcd, namespaces, BIRD, podman; the
# end-to-end tests exec the frozen binaries. No tests collected is a failure.
test: venv lint build
	@CNI_CALICO_FROZEN=1 $(BIN)/pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test-unit: venv
	$(BIN)/pytest -q -m "not etcd and not root and not bird"

# The multi-host lab: HOSTS simulated hosts (network namespaces) with calico-node + BIRD each,
# PODS pods per host, then node status, routes, blocks and cross-host pings. Cleans up after itself.
HOSTS ?= 2
PODS  ?= 2
demo: venv build
	CNI_CALICO_FROZEN=1 $(BIN)/python -m cni_calico.lab.demo --hosts $(HOSTS) --pods $(PODS)

# Only needed after a demo was killed: removes its namespaces, processes (by PID) and etcd.
demo-clean: venv
	$(BIN)/python -m cni_calico.lab.demo --clean

# CNI latency against Debian's Go ptp + host-local, and cluster IPAM throughput (a script, not a test).
bench: venv build
	CNI_CALICO_FROZEN=1 $(BIN)/python -m cni_calico.lab.bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
