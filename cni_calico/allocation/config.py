"""IPAM's cluster-wide settings (`/calico/ipam/v2/config`): strict affinity, the block limit per
host, automatic block allocation. Written by `calicoctl ipam configure`."""

from __future__ import annotations

from ..datastore import Datastore, read_modify_write
from ..model import keys
from ..model.v3 import IPAMConfigurationSpec


def set_ipam_config(ds: Datastore, **changes: object) -> IPAMConfigurationSpec:
    """`changes` by the fields' v3 names (strictAffinity=True); other stored fields are kept."""
    def change(current: str | None) -> str:
        config = IPAMConfigurationSpec.from_ipam_json(current)
        return IPAMConfigurationSpec.model_validate({**config.model_dump(), **changes}).ipam_json()

    written = read_modify_write(ds, keys.IPAM_CONFIG, change, "writing the IPAM configuration")
    return IPAMConfigurationSpec.from_ipam_json(written)
