"""calico-ipam: the CNI IPAM plugin (ADD, DEL, CHECK, STATUS, GC) over IpamClient.

Handle ID `<network name>.<CNI_CONTAINERID>`. The result is the IPAM short form with each
address carrying its block's prefix (10.100.151.193/26), or /32 for a requested IP.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import netaddr

from .allocation.client import IpamClient, Request, assignment_reads
from .cni.identity import Workload, determine_nodename, handle_id
from .cni.locks import host_lock
from .cni.skel import CmdArgs
from .cni.types import IPConfig, NetConf, Result, parse_netconf
from .datastore import Datastore, EtcdSettings, Prefetched, open_datastore
from .errors import (
    CHECK_FAILED,
    INVALID_ENVIRONMENT,
    INVALID_NETWORK_CONFIG,
    NO_ADDRESS_FOR_HANDLE,
    NOT_AVAILABLE,
    CniError,
)
from .model import keys

log = logging.getLogger(__name__)

DatastoreFactory = Callable[[NetConf, Mapping[str, str]], Datastore]
VALID_ATTACHMENTS = "cni.dev/valid-attachments"


def etcd_settings(conf: NetConf, env: Mapping[str, str]) -> EtcdSettings:
    return EtcdSettings.resolve(conf.etcd_endpoints, conf.etcd_key_file, conf.etcd_cert_file,
                                conf.etcd_ca_cert_file, env)


def datastore_from_conf(conf: NetConf, env: Mapping[str, str]) -> Datastore:
    return open_datastore(etcd_settings(conf, env))


def requested_addresses(args: Mapping[str, str]) -> list[netaddr.IPAddress]:
    """`IP=10.0.0.5` (or `IP=10.0.0.5,fd00::5`) from CNI_ARGS."""
    raw = args.get("IP", "").strip()
    if not raw:
        return []
    out = []
    for text in raw.split(","):
        try:
            out.append(netaddr.IPAddress(text.strip()))
        except (netaddr.AddrFormatError, ValueError):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS IP={text!r} is not an IP address") from None
    return out


class IpamPlugin:
    """The calico-ipam handlers; the datastore factory is a seam for the warm server and tests."""

    def __init__(self, datastore_factory: DatastoreFactory = datastore_from_conf) -> None:
        self.datastore_factory = datastore_factory

    @contextmanager
    def _session(self, args: CmdArgs) -> Iterator[tuple[NetConf, IpamClient]]:
        conf = parse_netconf(args.config)
        node = determine_nodename(conf.nodename, conf.nodename_file)
        with self.datastore_factory(conf, args.env) as datastore:
            yield conf, IpamClient(datastore, node)

    # ------------------------------------------------------------ ADD

    def add(self, args: CmdArgs) -> dict[str, Any]:
        with self._session(args) as (conf, client):
            client.ds = Prefetched(client.ds, *first_reads(conf, args.container_id, client.node))
            return assign(conf, client, args).encode(conf.cniVersion)

    # ------------------------------------------------------------ DEL

    def delete(self, args: CmdArgs) -> None:
        with self._session(args) as (conf, client):
            workload = Workload.from_cni_args(args.container_id, args.args)
            client.ds = Prefetched(client.ds, release_reads(conf, workload), [])  # one round trip for both handles
            release(conf, client, workload)

    # ------------------------------------------------------------ CHECK

    def check(self, args: CmdArgs) -> None:
        with self._session(args) as (conf, client):
            check(conf, client, args.container_id)

    # ------------------------------------------------------------ STATUS

    def status(self, args: CmdArgs) -> None:
        try:
            with self._session(args) as (conf, client):
                for version, wanted, pools in ((4, conf.ipam.wants_ipv4(), conf.ipam.ipv4_pools),
                                               (6, conf.ipam.wants_ipv6(), conf.ipam.ipv6_pools)):
                    if wanted and not client.can_assign(version, pools):
                        raise CniError(NOT_AVAILABLE, f"no free IPv{version} address for node {client.node!r}",
                                       "every usable pool is full")
        except CniError as err:
            if err.code in (NOT_AVAILABLE, INVALID_NETWORK_CONFIG):
                raise
            raise CniError(NOT_AVAILABLE, f"cannot serve ADD: {err.msg}", err.details) from err

    # ------------------------------------------------------------ GC

    def gc(self, args: CmdArgs) -> None:
        valid = valid_container_ids(args.config)  # refuse a malformed list before changing anything
        with self._session(args) as (conf, client):
            collect(conf, client, valid)


def first_reads(conf: NetConf, container_id: str, node: str) -> tuple[list[str], list[str]]:
    """What an assignment for this container reads first (keys, prefixes), for the caller to batch
    into one round trip with its own (see Prefetched)."""
    versions = [v for v, wants in ((4, conf.ipam.wants_ipv4()), (6, conf.ipam.wants_ipv6())) if wants]
    return assignment_reads(handle_id(conf.name, container_id), node, versions)


def assign(conf: NetConf, client: IpamClient, args: CmdArgs) -> Result:
    """Addresses for one attachment; a repeated ADD returns what the handle already holds. The
    client's store is best a Prefetched one holding `first_reads` (read under IPAM's lock)."""
    handle = handle_id(conf.name, args.container_id)
    workload = Workload.from_cni_args(args.container_id, args.args)
    wanted = requested_addresses(args.args)
    if not wanted and not conf.ipam.wants_ipv4() and not conf.ipam.wants_ipv6():
        raise CniError(INVALID_NETWORK_CONFIG, "ipam: assign_ipv4 and assign_ipv6 are both false")
    with host_lock(conf.ipam_lock_file):
        held = client.addresses_of(handle)
        if held:
            log.info("handle %s already holds %s; returning them", handle, ", ".join(map(str, held)))
            # the same answer as the first time: requested addresses come back as host routes
            return _result([_host_prefix(a) for a in held] if wanted else held)
        attrs = workload.allocation_attributes(client.node)
        if wanted:
            assigned = []
            try:
                for address in wanted:
                    assigned.append(client.assign_address(handle, attrs, address))
            except BaseException:
                client.release_handle(handle)
                raise
        else:
            assigned = client.auto_assign(Request(
                handle_id=handle, attrs=attrs,
                num_v4=1 if conf.ipam.wants_ipv4() else 0, num_v6=1 if conf.ipam.wants_ipv6() else 0,
                pools_v4=conf.ipam.ipv4_pools, pools_v6=conf.ipam.ipv6_pools))
    log.info("assigned %s to %s", ", ".join(map(str, assigned)), handle)
    return _result(assigned)


def release(conf: NetConf, client: IpamClient, workload: Workload, *, legacy: bool = True) -> None:
    """Release the attachment's handle and, with `legacy`, the handle older Calico versions used for
    the same workload (`<containerID>`, or `<namespace>.<pod>` for a pod), which clusters upgraded
    from them still hold: only when every address under it belongs to this workload on this node."""
    handle = handle_id(conf.name, workload.container_id)
    with host_lock(conf.ipam_lock_file):
        freed = client.release_handle(handle)
        log.info("released %d address(es) of %s", freed, handle)
        if legacy:
            old = legacy_handle_id(workload)
            holders = client.attributes_of(old)
            if holders and all(_belongs_to(attrs, workload, client.node) for attrs in holders):
                log.info("released %d address(es) of the legacy handle %s", client.release_handle(old), old)
            elif holders:
                log.warning("legacy handle %s holds addresses of another workload: left alone", old)


def release_reads(conf: NetConf, workload: Workload) -> list[str]:
    """The keys a release reads first (fetched with the caller's in one round trip)."""
    return [keys.handle(handle_id(conf.name, workload.container_id)), keys.handle(legacy_handle_id(workload))]


def legacy_handle_id(workload: Workload) -> str:
    return f"{workload.namespace}.{workload.pod}" if workload.pod else workload.container_id


def _belongs_to(attrs: Mapping[str, str], workload: Workload, node: str) -> bool:
    pod = (workload.pod, workload.namespace) if workload.pod else (None, None)  # a container: no pod named
    return attrs.get("node") == node and (attrs.get("pod"), attrs.get("namespace")) == pod


def _host_prefix(address: netaddr.IPNetwork) -> netaddr.IPNetwork:
    return netaddr.IPNetwork(f"{address.ip}/{32 if address.version == 4 else 128}")


def check(conf: NetConf, client: IpamClient, container_id: str) -> list[netaddr.IPNetwork]:
    """The handle must hold addresses, and every address of prevResult must be among them."""
    handle = handle_id(conf.name, container_id)
    held = client.addresses_of(handle)
    if not held:
        raise CniError(NO_ADDRESS_FOR_HANDLE, f"no address is assigned to {handle}",
                       "the allocation was released or never made; re-create the container")
    if conf.prevResult:
        held_ips = {n.ip for n in held}
        for ip in Result.decode(conf.prevResult).ips:
            if netaddr.IPNetwork(ip.address).ip not in held_ips:
                raise CniError(CHECK_FAILED, f"{ip.address} from prevResult is not assigned to {handle}",
                               f"the handle holds {', '.join(map(str, held))}")
    return held


def valid_container_ids(config: Mapping[str, Any]) -> set[str]:
    """The container IDs of `cni.dev/valid-attachments` (GC); a malformed list is code 7."""
    valid = config.get(VALID_ATTACHMENTS) or []
    if not isinstance(valid, list) or not all(isinstance(a, dict) and a.get("containerID") for a in valid):
        raise CniError(INVALID_NETWORK_CONFIG, f"{VALID_ATTACHMENTS} must be a list of {{containerID, ifname}}")
    return {str(a["containerID"]) for a in valid}


def collect(conf: NetConf, client: IpamClient, valid_ids: set[str]) -> None:
    """GC: release this node's handles of this network whose container is not in `valid_ids`."""
    keep = {handle_id(conf.name, cid) for cid in valid_ids}
    with host_lock(conf.ipam_lock_file):
        for handle in sorted(client.handles_on_node(prefix=f"{conf.name}.") - keep):
            log.info("GC: releasing %s", handle)
            client.release_handle(handle)


def _result(addresses: list[netaddr.IPNetwork]) -> Result:
    return Result(ips=[IPConfig(address=str(a)) for a in addresses])
