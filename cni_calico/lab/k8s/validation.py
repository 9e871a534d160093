"""Syntax checks the API server makes on every object: names, label and annotation keys and values."""

from __future__ import annotations

import re
from typing import Any

from .errors import Cause

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
MICRO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
MAX_ANNOTATIONS_BYTES = 256 * 1024


def dns_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not DNS_LABEL.fullmatch(value):
        errors.append("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                      "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                      "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    return errors


def dns_subdomain_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not DNS_SUBDOMAIN.fullmatch(value):
        errors.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                      "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                      "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return errors


def label_key_errors(key: str) -> list[str]:
    """A qualified name: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters."""
    prefix, _, name = key.rpartition("/")
    errors = []
    if "/" in prefix:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character, with an optional DNS subdomain prefix and '/'"]
    if key.endswith("/") or (prefix == "" and key.startswith("/")):
        errors.append("prefix part must be non-empty" if key.startswith("/") else "name part must be non-empty")
    elif prefix:
        errors += [f"prefix part {e}" for e in dns_subdomain_errors(prefix)]
    if not name:
        errors.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errors.append("name part must be no more than 63 characters")
        if not QUALIFIED_NAME.fullmatch(name):
            errors.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                          "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                          "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
    return errors


def label_value_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if value and not QUALIFIED_NAME.fullmatch(value):
        errors.append("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                      "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                      "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
    return errors


def string_map_causes(value: Any, path: str, check_values: bool) -> list[Cause]:
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return [Cause("FieldValueInvalid", "Invalid value: must be a map of strings", path)]
    causes = []
    for key, item in value.items():
        causes += [Cause("FieldValueInvalid", f'Invalid value: "{key}": {e}', path) for e in label_key_errors(key)]
        if check_values:
            causes += [Cause("FieldValueInvalid", f'Invalid value: "{item}": {e}', f"{path}.{key}")
                       for e in label_value_errors(item)]
    if not check_values and sum(len(k) + len(v) for k, v in value.items()) > MAX_ANNOTATIONS_BYTES:
        causes.append(Cause("FieldValueTooLong", "Too long: must have at most 262144 bytes", path))
    return causes


def name_causes(name: str, dns_label: bool, path: str = "metadata.name") -> list[Cause]:
    errors = dns_label_errors(name) if dns_label else dns_subdomain_errors(name)
    return [Cause("FieldValueInvalid", f'Invalid value: "{name}": {e}', path) for e in errors]


def micro_time_causes(value: Any, path: str) -> list[Cause]:
    """MicroTime fields (Lease times) are RFC 3339 with exactly six fractional digits, as Go parses them."""
    if value is None or (isinstance(value, str) and MICRO_TIME.fullmatch(value)):
        return []
    return [Cause("FieldValueInvalid", f'Invalid value: "{value}": must be RFC 3339 with microseconds '
                                       f'(2006-01-02T15:04:05.000000Z07:00)', path)]
