"""A private containerd for the CRI test, and the local image it runs.

containerd runs inside a simulated host's network namespace (nsenter --net: the machine's mount
namespace, so the fast-path agent and the tests see the same paths it does) with its whole
configuration private to one directory: root, state, gRPC socket, runc's state, CNI bin and conf
dirs, the pods' network namespaces (`netns_mounts_under_state_dir`), logs. /etc/containerd is
never read. The pause image is an OCI archive built here from Debian's static busybox and
imported with `ctr`, so nothing is pulled.

`stop()` undoes everything, also after a failure half-way: the sandboxes through CRI, then
containerd, then any shim of this containerd left running (found by its `-address` argument)
with its containers, the mounts under the directory, the pods' cgroups, the directory, and
/run/containerd/s (where containerd 1.6 puts its shims' sockets) when it made it and it is empty.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import grpc

from cni_calico.lab.hosts import NETNS_DIR, clean_env, kill_pid
from cni_calico.procs import command_line, running

from .cri import CriClient

APPLETS = ["sh", "sleep", "ip", "ping", "cat", "hostname"]
CGROUP_ROOT = Path("/sys/fs/cgroup")
SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6's shims put their sockets here, whatever the config
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, mode: int = 0o755,
             symlink: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.mode = 0, 0, 0, mode
    if symlink:
        info.type, info.linkname = tarfile.SYMTYPE, symlink
    elif data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def busybox_image(path: Path, name: str, busybox: Path, entrypoint: list[str]) -> None:
    """Write an OCI image archive (layout + index.json) holding one uncompressed layer: static
    busybox and its applets under /bin. `name` is the reference containerd stores it as."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp"):
            _tar_add(layer, d, mode=0o1777 if d == "tmp" else 0o755)
        _tar_add(layer, "bin/busybox", busybox.read_bytes())
        for applet in APPLETS:
            _tar_add(layer, f"bin/{applet}", symlink="busybox", mode=0o777)
    layer_digest, layer_data = _blob(layer_buf.getvalue())
    arch = OCI_ARCH.get(platform.machine(), platform.machine())
    config_digest, config_data = _blob(json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},  # uncompressed: the diff ID is its digest
    }).encode())
    manifest_digest, manifest_data = _blob(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_data)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                    "size": len(layer_data)}],
    }).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": len(manifest_data), "platform": {"architecture": arch, "os": "linux"},
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
    }]}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        _tar_add(archive, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), mode=0o644)
        _tar_add(archive, "index.json", json.dumps(index).encode(), mode=0o644)
        _tar_add(archive, "blobs")
        _tar_add(archive, "blobs/sha256")
        for digest, data in ((layer_digest, layer_data), (config_digest, config_data),
                             (manifest_digest, manifest_data)):
            _tar_add(archive, f"blobs/sha256/{digest.removeprefix('sha256:')}", data, mode=0o644)


def config_toml(root: Path, sandbox_image: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{root}/containerd.sock"

[ttrpc]
  address = "{root}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "debug"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[{cri}]
  sandbox_image = "{sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = true  # a negative oom_score_adj needs a privilege this machine may withhold
  enable_selinux = false
  netns_mounts_under_state_dir = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "runc"
  Root = "{root}/runc"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{root}/cni-bin"
  conf_dir = "{root}/cni-conf"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{root}/certs.d"
"""


class PrivateContainerd:
    def __init__(self, root: Path, netns: str, sandbox_image: str, env: dict[str, str] | None = None) -> None:
        self.root, self.netns, self.sandbox_image = root, netns, sandbox_image
        self.socket = str(root / "containerd.sock")
        self.cgroup_parent = f"/{root.name}"  # the pods' cgroups, under one parent of ours
        self.env = {**clean_env(("CNI_", "ETCD_", "CALICO_")), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.cri: CriClient | None = None
        self.made = [d for d in (SHIM_SOCKETS.parent, SHIM_SOCKETS) if not d.exists()]  # removed if still empty
        for d in ("cni-bin", "cni-conf", "certs.d", "logs"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "config.toml").write_text(config_toml(root, sandbox_image))

    @property
    def log(self) -> Path:
        return self.root / "containerd.log"

    def start(self, timeout: float = 30) -> CriClient:
        with open(self.log, "ab") as sink:
            self.proc = subprocess.Popen(["nsenter", f"--net={NETNS_DIR}/{self.netns}", "containerd", "--config",
                                          str(self.root / "config.toml")], env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=sink, stderr=sink)
        cri = CriClient(self.socket, timeout=timeout)
        self.cri = cri
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited ({self.proc.returncode}):\n{self.log_tail()}")
            if os.path.exists(self.socket):
                try:
                    cri.call("Version", deadline=2, version="v1")
                    return cri
                except grpc.RpcError as exc:  # not serving yet: CRI comes up after the socket
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"containerd's CRI did not answer: {exc}\n{self.log_tail()}") from exc
            elif time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not listen on {self.socket}\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def ctr(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(["ctr", "--address", self.socket, "--namespace", "k8s.io", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    # ---- everything undone ------------------------------------------------------------------
    def stop(self) -> None:
        if self.cri is not None:
            self._remove_sandboxes(self.cri)
            self.cri.close()
            self.cri = None
        if self.proc is not None:
            kill_pid(self.proc.pid, signal.SIGTERM, wait=10)
            self.proc.wait(timeout=10)
            self.proc = None
        for shim in self.shims():
            for pid in _descendants(shim):
                kill_pid(pid, signal.SIGKILL, wait=5)
            kill_pid(shim, signal.SIGTERM, wait=5)
        for mount in reversed(_mounts_under(self.root)):
            subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)
        _remove_cgroups(self.cgroup_parent)
        shutil.rmtree(self.root, ignore_errors=True)
        for made in reversed(self.made):
            try:
                made.rmdir()  # only when empty: another containerd's shims may have come meanwhile
            except OSError:
                pass

    @staticmethod
    def _remove_sandboxes(cri: CriClient) -> None:
        try:
            sandboxes = cri.call("ListPodSandbox", deadline=10)["items"]
        except Exception:  # noqa: BLE001 - containerd gone: the shims and mounts are handled below
            return
        for sandbox in sandboxes:
            for method in ("StopPodSandbox", "RemovePodSandbox"):
                try:
                    cri.call(method, deadline=30, pod_sandbox_id=sandbox["id"])
                except Exception:  # noqa: BLE001 - best effort: what stays is killed and unmounted
                    pass

    def shims(self) -> list[int]:
        """The shims serving this containerd: `-address <our socket>` on their command line."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                argv = command_line(int(entry))
                if argv and "containerd-shim" in Path(argv[0]).name and self.socket in argv:
                    found.append(int(entry))
        return found


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if running(child):
                out.append(child)
                todo.append(child)
    return out


def _mounts_under(root: Path) -> list[str]:
    """Mount points below `root`, in the order they were mounted."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # \040 and friends
        if point.startswith(prefix):
            points.append(point)
    return points


def _remove_cgroups(parent: str) -> None:
    """rmdir the parent's cgroup in every hierarchy, deepest first (only empty ones go)."""
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
        top = hierarchy / parent.lstrip("/")
        if not top.is_dir() or not parent.strip("/"):
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda walked: -walked[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def sandbox_info(status: dict[str, Any]) -> dict[str, Any]:
    """containerd's verbose PodSandboxStatus `info`: its JSON (pid, netns path, CNI result...)."""
    return dict(json.loads(status["info"]["info"]))
