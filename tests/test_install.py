"""`make install` lays out the frozen bundle so the installed names work from where they land:
the plugins' client answers VERSION itself and hands an unserved call to the full executable,
found relative to itself. Runs on the frozen build only (what `make test` tests)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from cni_calico.lab import binaries

from .conftest import REPO

pytestmark = pytest.mark.skipif(not binaries.frozen(), reason="tests the frozen build (make test builds it)")


def test_installed_plugins_answer_and_fall_back_to_the_full_executable(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    proc = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "CNI_BIN_DIR=/opt/cni/bin",
                           "BIN_DIR=/usr/local/bin", "INSTALL_CONF=1"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    cni_bin = dest / "opt/cni/bin"
    assert os.readlink(cni_bin / "calico") == "cni-calico/client/calico-cni"
    for name in ("calicoctl", "calico-node", "calico-kube-controllers"):  # relative: they work in the staged tree
        assert os.readlink(dest / "usr/local/bin" / name) == "../../../opt/cni/bin/cni-calico/cni-calico"
    # Far enough to load the bundled kubernetes client, which then finds no kubeconfig: one line, exit 1.
    controllers = subprocess.run([str(dest / "usr/local/bin/calico-kube-controllers")], capture_output=True,
                                 text=True, timeout=60, env={"PATH": os.environ["PATH"], "KUBECONFIG": "/nonexistent"})
    assert controllers.returncode == 1 and controllers.stderr.count("\n") == 1, controllers.stderr
    assert "kubeconfig /nonexistent" in controllers.stderr
    ctl = subprocess.run([str(dest / "usr/local/bin/calicoctl"), "version"], capture_output=True, text=True,
                         timeout=60, env={"PATH": os.environ["PATH"], "ETCD_ENDPOINTS": "http://127.0.0.1:1"})
    assert "Client Version" in ctl.stdout, (ctl.stdout, ctl.stderr)
    assert json.loads((dest / "etc/cni/net.d/10-calico.conf").read_text())["type"] == "calico"
    env = {"PATH": os.environ["PATH"]}
    for plugin in ("calico", "calico-ipam"):
        version = subprocess.run([str(cni_bin / plugin)], env={**env, "CNI_COMMAND": "VERSION"},
                                 capture_output=True, text=True, timeout=30)
        assert version.returncode == 0 and "1.1.0" in json.loads(version.stdout)["supportedVersions"]
        # Nobody serves this call: the client execs the installed full executable, whose skel
        # reports the missing variables (CNI error 4).
        add = subprocess.run([str(cni_bin / plugin)], env={**env, "CNI_COMMAND": "ADD"},
                             input='{"cniVersion": "0.4.0", "name": "n", "type": "calico"}',
                             capture_output=True, text=True, timeout=60)
        assert add.returncode == 1, add.stderr
        error = json.loads(add.stdout)
        assert error["code"] == 4 and "CNI_CONTAINERID" in error["msg"]
    # A broken install, the full executable gone: still one CNI error on stdout, not a traceback.
    (cni_bin / "cni-calico" / "cni-calico").unlink()
    broken = subprocess.run([str(cni_bin / "calico")], env={**env, "CNI_COMMAND": "ADD"},
                            input='{"cniVersion": "0.4.0", "name": "n", "type": "calico"}',
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    error = json.loads(broken.stdout)
    assert (error["code"], error["cniVersion"]) == (100, "0.4.0") and "cannot run" in error["msg"]
