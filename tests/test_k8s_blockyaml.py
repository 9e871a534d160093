"""The kubeconfig YAML reader: on what it reads, exactly PyYAML's answer; the rest it declines
(and PyYAML reads it). Kubeconfigs as kubectl, kubeadm, Calico's installer and the API stand-in
write them must be read without PyYAML."""

from __future__ import annotations

import base64
import random
import string
import subprocess
import sys
from typing import Any

import pytest
import yaml

from cni_calico.cni.k8s import blockyaml
from cni_calico.cni.k8s.kubeconfig import parse

PEM = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n" + bytes(range(256)) * 3).decode()

KUBECTL = f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {PEM}
    server: https://10.96.0.1:443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    namespace: kube-system
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {{}}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: {PEM}
    client-key-data: {PEM}
"""

CALICO_INSTALLER = f"""# Kubeconfig file for Calico CNI plugin.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://[fd00:10:96::1]:443
    certificate-authority-data: "{PEM}"
users:
- name: calico
  user:
    token: "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2ln"
contexts:
- name: calico-context
  context:
    cluster: local
    user: calico
current-context: calico-context
"""

INDENTED = """---
apiVersion: v1
clusters:
  -   name: 'it''s'
      cluster:
        server: "https://h:6443/\\"x\\"\\\\y"   # a comment after a quoted value
        insecure-skip-tls-verify: true

users:
  - name: u
    user:
      username: admin
      password: 'p#ss: word'
      as-groups:
        - a
        -
        - 'b'
  - name: empty
    user:
contexts: []
current-context: ~
\r
"""


RESOLVED = "a: yes\nb: On\nc: NULL\nd: ~\ne:\nf: off\ng: FALSE\nh: True\ni: nO\nj: y\nk: 'yes'\n"


@pytest.mark.parametrize("text", [KUBECTL, CALICO_INSTALLER, INDENTED, RESOLVED, "", "# only a comment\n", "a: b\n"])
def test_what_it_reads_is_what_pyyaml_reads(text: str) -> None:
    assert blockyaml.load(text) == yaml.safe_load(text)


def test_the_stand_ins_kubeconfigs_need_no_pyyaml() -> None:
    from cni_calico.lab.k8s.kubeconfig import kubeconfig

    for document in (kubeconfig("https://127.0.0.1:6443", b"ca", token="t"),
                     kubeconfig("https://127.0.0.1:6443", b"ca", client_cert_pem=b"c", client_key_pem=b"k",
                                namespace="ns")):
        text = yaml.safe_dump(document, sort_keys=False)
        assert blockyaml.load(text) == document


@pytest.mark.parametrize("text", [
    "a: {b: c}\n", "a: [b]\n", "a: &x b\nc: *x\n", "a: !!str b\n", "a: |\n  b\n", "a: >\n  b\n",
    "a: b\n  c\n", 'a: "b\n  c"\n', "a: 1\n", "a: 0x1f\n", "a: 2001-12-14\n", "a: .inf\n", "a: -1\n",
    "a: b # comment\n", "a: b: c\n", "1: a\n", "yes: a\n", '"a": b\n', "a:\tb\n", "a: caf\u00e9\n",
    "\ufeffa: b\n", "a: b\n---\nc: d\n", "a: b\n...\n", "- - a\n", "a:\n  - b\n  c: d\n", "a: b\n c: d\n",
    "a: 'b' c\n", 'a: "\\x41"\n', "? a\n: b\n", "a: <<\n", "a: @b\n", "a: b\rc\n",
])
def test_what_it_declines(text: str) -> None:
    with pytest.raises(blockyaml.Unsupported):
        blockyaml.load(text)


SCALARS = ["plain", "with space", "yes", "no", "on", "null", "~", "", "true", "1", "1.5", "0x1f", "2001-12-14",
           "a: b", "a #b", "#x", "- x", "'q'", '"d"', " lead", "trail ", "https://h:6443", "kns.default", "a:b",
           "x" * 300, PEM[:200], "tab\there", "new\nline", "café", "-dash", "?q", "%p", "@a", "!t", "&a", "*a",
           "back\\slash", 'quote"inside', "it's", "=", "<<"]


def random_document(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth > 3 or kind < 0.35:
        return rng.choice([*SCALARS, True, False, None])
    if kind < 0.7:
        return {rng.choice(["name", "server", "user", "cluster", "a-b", "x.y/z", "token", "yes", "1", "k"
                            + "".join(rng.choices(string.ascii_lowercase, k=3))]): random_document(rng, depth + 1)
                for _ in range(rng.randint(0, 4))}
    return [random_document(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def test_generated_documents_read_as_pyyaml_reads_them() -> None:
    rng = random.Random(20261202)
    read = declined = 0
    for _ in range(3000):
        document = random_document(rng)
        text = yaml.safe_dump(document, default_flow_style=rng.choice([False, None]), indent=rng.choice([2, 4]),
                              width=rng.choice([80, 10_000]), sort_keys=rng.choice([True, False]))
        expected = yaml.safe_load(text)
        try:
            assert blockyaml.load(text) == expected, text
            read += 1
        except blockyaml.Unsupported:
            declined += 1
    assert read > 1000 and declined > 100  # both sides exercised


def test_parse_falls_back_to_pyyaml_and_reads_kubeconfigs_without_it(tmp_path: Any) -> None:
    assert parse("a: {b: c}\n", "k") == {"a": {"b": "c"}}  # declined by blockyaml, read by PyYAML
    script = ("import sys; from cni_calico.cni.k8s.kubeconfig import parse, select; "
              "doc = parse(sys.stdin.read(), '/k'); select(doc, '/k'); print('yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], input=CALICO_INSTALLER, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
