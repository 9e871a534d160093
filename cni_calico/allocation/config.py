"""IPAM's cluster-wide settings (`/calico/ipam/v2/config`): strict affinity, the block limit per
host, automatic block allocation. Written by `calicoctl ipam configure`."""

from __future__ import annotations

from ..datastore import Datastore, read_modify_write
from ..model import keys
from ..model.resources import IPAMConfig


def set_ipam_config(ds: Datastore, **changes: object) -> IPAMConfig:
    def change(current: str | None) -> str:
        config = IPAMConfig.model_validate_json(current) if current else IPAMConfig()
        return IPAMConfig.model_validate({**config.model_dump(), **changes}).to_json()

    written = read_modify_write(ds, keys.IPAM_CONFIG, change, "writing the IPAM configuration")
    return IPAMConfig.model_validate_json(written or "{}")
