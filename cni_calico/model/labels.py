"""Kubernetes' label syntax, as Calico validates it: the one rule for every label the project
reads or writes (calicoctl documents, the network config's args.cni.labels, profiles' labels)."""

from __future__ import annotations

import re

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")  # RFC 1123, Calico's nameRegex
QUALIFIED = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def key_problem(key: str) -> str | None:
    """Kubernetes' IsQualifiedName: `[prefix/]name`, the prefix a DNS subdomain (at most 253),
    the name at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"invalid key {key!r}: the prefix before '/' must be a DNS subdomain"
    if not name or len(name) > 63 or not QUALIFIED.fullmatch(name):
        return (f"invalid key {key!r}: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    return None


def value_problem(value: str) -> str | None:
    """Empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric."""
    if value and (len(value) > 63 or not QUALIFIED.fullmatch(value)):
        return (f"invalid label value {value!r}: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    return None
