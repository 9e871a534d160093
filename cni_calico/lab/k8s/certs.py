"""A private PKI made with the `openssl` command: a CA, the server's certificate, client certificates.

EC P-256 keys (fast to make); the server certificate names its IP addresses and DNS names as
subjectAltNames, as a client that checks the server's identity requires.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path

    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    def key_pem(self) -> bytes:
        return self.key.read_bytes()


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the openssl command is needed to make the lab's certificates")
    proc = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {proc.stderr.strip()}")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def make_ca(directory: Path, name: str, common_name: str = "cni-calico-lab-ca", days: int = 3650) -> CertPair:
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    _new_key(pair.key)
    _openssl("req", "-x509", "-new", "-key", str(pair.key), "-out", str(pair.cert), "-days", str(days),
             "-subj", f"/CN={common_name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    return pair


def make_cert(directory: Path, name: str, ca: CertPair, common_name: str, *, organizations: tuple[str, ...] = (),
              ips: tuple[str, ...] = (), dns_names: tuple[str, ...] = (), server: bool = False,
              days: int = 3650) -> CertPair:
    """A certificate signed by `ca`: for a server (serverAuth, with SANs) or a client (clientAuth)."""
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    _new_key(pair.key)
    csr = directory / f"{name}.csr"
    subject = "".join(f"/O={o}" for o in organizations) + f"/CN={common_name}"
    _openssl("req", "-new", "-key", str(pair.key), "-out", str(csr), "-subj", subject)
    lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}"]
    sans = [f"IP:{ip}" for ip in ips] + [f"DNS:{name}" for name in dns_names]
    if sans:
        lines.append(f"subjectAltName={','.join(sans)}")
    extensions = directory / f"{name}.ext"
    extensions.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
             "-set_serial", str(secrets.randbits(63)), "-days", str(days), "-extfile", str(extensions),
             "-out", str(pair.cert))
    csr.unlink()
    extensions.unlink()
    return pair


@dataclass(frozen=True)
class LabPki:
    ca: CertPair
    server: CertPair
    client: CertPair


def make_pki(directory: Path, server_ips: tuple[str, ...] = ("127.0.0.1",),
             client_name: str = "cni-calico-admin", client_groups: tuple[str, ...] = ("system:masters",)) -> LabPki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca")
    server = make_cert(directory, "server", ca, "kube-apiserver", ips=server_ips,
                       dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
                       server=True)
    client = make_cert(directory, "client", ca, client_name, organizations=client_groups)
    return LabPki(ca, server, client)
