"""Pool writes as library calls, for the lab, the demo and the tests.

Users manage the same resources with calicoctl; these are the programmatic shortcuts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from ..datastore import Datastore
from ..model import keys, selector
from ..model.keys import pool_key
from ..model.v3 import IPPool, IPPoolSpec, ObjectMeta, to_json


class AdminError(Exception):
    """A one-line message for the user; the command exits 1."""


def create_pool(ds: Datastore, name: str, cidr: str, **spec: object) -> IPPool:
    """Validate and create an IPPool; refuses a duplicate name or an overlapping CIDR."""
    try:
        pool = IPPool(metadata=ObjectMeta(name=name, creationTimestamp=datetime.now(UTC).isoformat()),
                      spec=IPPoolSpec.model_validate({"cidr": cidr, **spec}))
        selector.parse(pool.spec.nodeSelector)
    except (ValidationError, ValueError) as exc:
        raise AdminError(f"invalid pool {name!r}: {_first_error(exc)}") from None
    for kv in ds.list(keys.resource_prefix("ippools")):
        other = IPPool.model_validate_json(kv.value)
        if other.network.version == pool.network.version and (
                pool.network in other.network or other.network in pool.network):
            raise AdminError(f"pool {name} ({pool.network}) overlaps pool {other.name} ({other.network})")
    if not ds.create(pool_key(name), to_json(pool)):
        raise AdminError(f"pool {name!r} already exists")
    return pool


def delete_pool(ds: Datastore, name: str) -> None:
    kv = ds.get(pool_key(name))
    if kv is None or not ds.delete(kv.key, kv.mod_revision):
        raise AdminError(f"pool {name!r} does not exist")


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
    return str(exc)
