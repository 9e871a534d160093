"""Where calicoctl finds etcd: `--config FILE` (Calico's calicoctl.cfg), else the default file when
it exists, else the ETCD_* environment variables (Calico's order: a file wins over the environment)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import yaml

from ..datastore.etcd import DEFAULT_ENDPOINT, EtcdSettings
from .errors import CtlError

if TYPE_CHECKING:  # imported where used: only commands that reach etcd load its client
    from ..datastore import EtcdDatastore

DEFAULT_CONFIG = "/etc/calico/calicoctl.cfg"
_SPEC_FIELDS = {"datastoreType", "etcdEndpoints", "etcdKeyFile", "etcdCertFile", "etcdCACertFile",
                "etcdUsername", "etcdPassword"}


def from_environment(env: Mapping[str, str]) -> EtcdSettings:
    return EtcdSettings.resolve(None, None, None, None, env)


def from_file(path: str) -> EtcdSettings:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise CtlError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CtlError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("kind") != "CalicoAPIConfig":
        raise CtlError(f"config file {path}: expected kind CalicoAPIConfig")
    spec = data.get("spec") or {}
    if not isinstance(spec, dict):
        raise CtlError(f"config file {path}: spec must be a mapping")
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        raise CtlError(f"config file {path}: unknown field spec.{unknown[0]}")
    if spec.get("datastoreType", "etcdv3") != "etcdv3":
        raise CtlError(f"config file {path}: datastoreType {spec['datastoreType']!r} is not supported (etcdv3 only)")
    return EtcdSettings(str(spec.get("etcdEndpoints") or DEFAULT_ENDPOINT), spec.get("etcdKeyFile") or None,
                        spec.get("etcdCertFile") or None, spec.get("etcdCACertFile") or None, source=path)


def resolve(config_path: str | None, env: Mapping[str, str]) -> EtcdSettings:
    if config_path:
        return from_file(config_path)
    if Path(DEFAULT_CONFIG).is_file():
        return from_file(DEFAULT_CONFIG)
    return from_environment(env)


def open_store(settings: EtcdSettings) -> EtcdDatastore:
    """The etcd datastore; an unreachable etcd surfaces later as DatastoreUnavailable (turned into
    one line by main)."""
    from ..datastore import open_datastore
    from ..errors import CniError

    try:
        return open_datastore(settings)
    except CniError as exc:
        raise CtlError(exc.msg) from None
