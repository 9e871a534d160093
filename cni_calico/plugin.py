"""calico: the CNI plugin that wires a workload into its host, Calico's way.

ADD: addresses from IPAM (calico-ipam in process, any other IPAM plugin by exec), a veth pair
(`cali...` on the host with MAC ee:ee:ee:ee:ee:ee, proxy ARP and a /32 route; CNI_IFNAME in the
container with /32 addresses and a default route via 169.254.1.1), then the WorkloadEndpoint in
etcd. IPAM's etcd work overlaps the making of the veth pair, and the endpoint's write overlaps the
addresses and routes going in (threads; the calling one keeps all the netlink work). Every side
effect pushes its inverse on an undo stack, unwound if a later step fails; the unwinding first
waits for work still in flight.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import netaddr

from . import ipam as calico_ipam
from . import logs, netns
from .allocation.client import IpamClient
from .cni.identity import (
    Workload,
    determine_nodename,
    endpoint_name,
    endpoint_namespace,
    host_veth_name,
)
from .cni.locks import attachment_lock_path, host_lock
from .cni.profile import InvalidProfile, profile_to_write
from .cni.skel import CmdArgs
from .cni.types import (
    DEFAULT_IPAM_LOCK_FILE,
    CalicoNetConf,
    Interface,
    IPConfig,
    Result,
    Route,
    parse_netconf,
)
from .cni.undo import UndoStack
from .datastore import Datastore, KeyValue, Prefetched
from .errors import (
    CHECK_FAILED,
    DATAPLANE_FAILURE,
    DELEGATE_FAILURE,
    INVALID_NETWORK_CONFIG,
    TRY_AGAIN_LATER,
    CniError,
)
from .model import keys
from .model.resources import (
    Metadata,
    Profile,
    WorkloadEndpoint,
    WorkloadEndpointSpec,
    allow_all_profile,
    network_profile,
    profile_key,
    to_json,
    workload_endpoint_key,
)
from .netns import LinkExists, Netns

log = logging.getLogger(__name__)

HOST_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"

# Hooks for fault-injection tests (never set in production): the step of ADD at which to fail,
# or `<step>:<marker file>` at which to create the marker and hang until killed.
FAIL_AT_ENV = "CNI_CALICO_TEST_FAIL_AT"
HANG_AT_ENV = "CNI_CALICO_TEST_HANG_AT"


@dataclass
class Attachment:
    """Everything that names one attachment, derived once from the call."""

    conf: CalicoNetConf
    args: CmdArgs
    node: str
    workload: Workload

    @property
    def host_ifname(self) -> str:
        return host_veth_name(self.workload)

    @property
    def endpoint_name(self) -> str:
        return endpoint_name(self.node, self.workload, self.args.ifname)

    @property
    def endpoint_key(self) -> str:
        return workload_endpoint_key(endpoint_namespace(self.workload), self.endpoint_name)

    @property
    def uses_calico_ipam(self) -> bool:
        return self.conf.ipam.type in ("calico-ipam", "")


class CalicoPlugin:
    def __init__(self, datastore_factory: calico_ipam.DatastoreFactory = calico_ipam.datastore_from_conf) -> None:
        self.datastore_factory = datastore_factory

    @contextmanager
    def _session(self, args: CmdArgs) -> Iterator[tuple[Attachment, Datastore]]:
        conf = parse_netconf(args.config, CalicoNetConf)
        node = determine_nodename(conf.nodename, conf.nodename_file)
        attachment = Attachment(conf, args, node, Workload.from_cni_args(args.container_id, args.args))
        lock_dir = os.path.dirname(conf.ipam_lock_file or DEFAULT_IPAM_LOCK_FILE)
        with self.datastore_factory(conf, args.env) as datastore, \
                host_lock(attachment_lock_path(lock_dir, attachment.host_ifname)):
            yield attachment, datastore

    # ------------------------------------------------------------ ADD

    def add(self, args: CmdArgs) -> dict[str, Any]:
        # The undo stack unwinds while the netlink sockets its steps use are still open.
        with self._session(args) as (att, ds), netns.host() as host, Netns(args.netns) as container:
            if container.link(args.ifname) is not None:
                existing = self._existing_attachment(att, ds, host, container)
                if existing is not None:
                    return existing.encode(att.conf.cniVersion)
            undo = UndoStack()
            try:
                result = self._add(att, ds, host, container, undo)
            except BaseException:
                failed = undo.unwind()
                if failed:
                    log.error("ADD of %s left behind: %s", args.container_id, ", ".join(failed))
                raise
            return result.encode(att.conf.cniVersion)

    def _add(self, att: Attachment, ds: Datastore, host: Netns, container: Netns, undo: UndoStack) -> Result:
        fail_at = att.args.env.get(FAIL_AT_ENV, "")
        hang_at, _, marker = att.args.env.get(HANG_AT_ENV, "").partition(":")

        def step(name: str) -> None:
            if fail_at == name:
                raise CniError(DATAPLANE_FAILURE, f"injected failure at {name}")
            if hang_at == name:
                open(marker, "w").close()
                time.sleep(600)

        step("ipam")
        # IPAM talks to etcd on a thread while this one builds the veth pair, which needs no
        # address. On a failure the undo waits for IPAM first: what it took is then on the stack
        # (IPAM pushes its own undo when it finishes) and is released too.
        ipam = _Background(lambda: self._ipam_add(att, ds, undo))
        undo.push("IPAM in flight", ipam.settle)
        step("wire")
        try:
            host.create_veth(att.host_ifname, att.args.ifname, container, att.conf.mtu, HOST_MAC)
        except LinkExists:  # left by an attachment that was never deleted: the name is ours
            host.delete_link(att.host_ifname)
            log.warning("replaced a stale host interface %s", att.host_ifname)
            host.create_veth(att.host_ifname, att.args.ifname, container, att.conf.mtu, HOST_MAC)
        undo.push(f"host veth {att.host_ifname}", lambda: host.delete_link(att.host_ifname))
        host_link = _must(host.link(att.host_ifname), att.host_ifname)
        container_link = _must(container.link(att.args.ifname), att.args.ifname)
        addresses, ds = ipam.result()  # ds: now serving the endpoint's keys, read with IPAM's
        step("veth")
        # Everything the endpoint says is known now: it is written while the addresses and
        # routes go in (same undo pattern as IPAM's).
        endpoint = _Background(lambda: self._write_endpoint(att, ds, undo, container_link.mac, addresses))
        undo.push("endpoint write in flight", endpoint.settle)
        step("sysctl")
        self._configure_host_side(host, att.host_ifname, addresses)
        self._configure_container_side(container, container_link.index, att, addresses)
        step("route")
        for address in addresses:  # removed with the veth by the undo above
            host.add_route(_host_route(address), host_link.index)
        step("endpoint")
        endpoint.result()
        step("done")
        return _result(att, host_link.name, container_link.mac, addresses)

    def _existing_attachment(self, att: Attachment, ds: Datastore, host: Netns, container: Netns) -> Result | None:
        """ADD again for an attachment that exists (a runtime retrying, or two ADDs for one
        container, which take turns on the attachment lock): the same answer when its networking
        checks out; None once a broken one is torn down, to be made again with the addresses it
        holds. An interface this container's attachment does not account for is an error."""
        addresses = self._attachment_addresses(att, ds)
        if not addresses:
            raise CniError(DATAPLANE_FAILURE, f"interface {att.args.ifname} already exists in {att.args.netns}",
                           "no attachment of this container holds it; DEL the old attachment first")
        try:
            _check_container(container, att.args.ifname, addresses)
            _check_host(host, att.host_ifname, addresses)
            _check_endpoint(ds, att, addresses)
        except CniError as broken:
            log.warning("repeated ADD: %s; making the attachment again", broken.msg)
            container.delete_link(att.args.ifname)
            host.delete_link(att.host_ifname)
            return None
        log.info("repeated ADD: the attachment is in place; returning it as it is")
        link = _must(container.link(att.args.ifname), att.args.ifname)
        return _result(att, att.host_ifname, link.mac, addresses)

    def _attachment_addresses(self, att: Attachment, ds: Datastore) -> list[netaddr.IPNetwork]:
        """What this container's attachment holds: its endpoint's addresses, else (an ADD that
        stopped before writing it) its IPAM handle's."""
        kv = ds.get(att.endpoint_key)
        if kv is not None:
            spec = WorkloadEndpoint.model_validate_json(kv.value).spec
            if spec.containerID == att.args.container_id and spec.endpoint == att.args.ifname:
                return [netaddr.IPNetwork(n) for n in spec.ipNetworks]
        if att.uses_calico_ipam:
            return IpamClient(ds, att.node).addresses_of(calico_ipam.handle_id(att.conf.name, att.args.container_id))
        return []

    def _ipam_add(self, att: Attachment, ds: Datastore,
                  undo: UndoStack) -> tuple[list[netaddr.IPNetwork], Datastore]:
        """The attachment's addresses, and the store to go on with: with calico-ipam, one that
        already holds the endpoint and profile keys (read in IPAM's first round trip)."""
        if att.uses_calico_ipam:
            client = IpamClient(ds, att.node)
            result = calico_ipam.assign(att.conf, client, att.args,
                                        also_read=[att.endpoint_key, profile_key(_endpoint_profile(att))])
            ds = client.ds
            handle = f"{att.conf.name}.{att.args.container_id}"
            undo.push(f"IPAM handle {handle}", lambda: client.release_handle(handle))
        else:
            result = Result.decode(delegate(att.conf.ipam.type, "ADD", att.args))
            undo.push(f"IPAM plugin {att.conf.ipam.type}", lambda: delegate(att.conf.ipam.type, "DEL", att.args))
        if not result.ips:
            raise CniError(DELEGATE_FAILURE, f"IPAM {att.conf.ipam.type} returned no address")
        return [netaddr.IPNetwork(ip.address) for ip in result.ips], ds

    @staticmethod
    def _configure_host_side(host: Netns, ifname: str, addresses: list[netaddr.IPNetwork]) -> None:
        for key, value in (("proxy_arp", "1"), ("forwarding", "1"), ("route_localnet", "1")):
            host.write_sysctl(f"net/ipv4/conf/{ifname}/{key}", value)
        host.write_sysctl(f"net/ipv4/neigh/{ifname}/proxy_delay", "0")
        if any(a.version == 6 for a in addresses):
            for key, value in (("proxy_ndp", "1"), ("accept_ra", "0"), ("forwarding", "1")):
                host.write_sysctl(f"net/ipv6/conf/{ifname}/{key}", value)

    @staticmethod
    def _configure_container_side(container: Netns, index: int, att: Attachment,
                                  addresses: list[netaddr.IPNetwork]) -> None:
        has_v6 = any(a.version == 6 for a in addresses)
        if has_v6:  # no duplicate address detection: the address would sit "tentative" for a second
            container.write_sysctl(f"net/ipv6/conf/{att.args.ifname}/accept_dad", "0")
        container.set_up(index)
        for address in addresses:
            container.add_address(index, _host_route(address))
        if any(a.version == 4 for a in addresses):
            container.add_route(netaddr.IPNetwork(f"{GATEWAY_V4}/32"), index)
            container.add_route(netaddr.IPNetwork("0.0.0.0/0"), index, gateway=GATEWAY_V4)
        if has_v6:
            container.add_route(netaddr.IPNetwork("::/0"), index, gateway=GATEWAY_V6)
        forwarding = "1" if att.conf.container_settings.allow_ip_forwarding else "0"
        container.write_sysctl("net/ipv4/ip_forward", forwarding)

    def _write_endpoint(self, att: Attachment, ds: Datastore, undo: UndoStack, mac: str,
                        addresses: list[netaddr.IPNetwork]) -> None:
        profile = _endpoint_profile(att)
        namespace = endpoint_namespace(att.workload)
        name = att.endpoint_name
        wep = WorkloadEndpoint(
            metadata=Metadata(name=name, namespace=namespace, labels={
                **att.conf.labels(),  # Calico's own labels below always win
                "projectcalico.org/namespace": namespace,
                "projectcalico.org/orchestrator": att.workload.orchestrator,
            }),
            spec=WorkloadEndpointSpec(
                orchestrator=att.workload.orchestrator, workload=att.workload.pod or att.args.container_id,
                pod=att.workload.pod, node=att.node, containerID=att.args.container_id,
                endpoint=att.args.ifname, interfaceName=att.host_ifname, mac=mac,
                ipNetworks=[str(_host_route(a)) for a in addresses], profiles=[profile]))
        _write_with_profile(ds, att.endpoint_key, to_json(wep), _profile_resource(att))
        undo.push(f"endpoint {name}", lambda: _delete_key(ds, att.endpoint_key))

    # ------------------------------------------------------------ DEL

    def delete(self, args: CmdArgs) -> None:
        with self._session(args) as (att, ds):
            # Removing the container's end takes the pair and the host route with it, and is safe
            # whatever else happened: that namespace is this container's. The kernel's ~20 ms for
            # it overlap the datastore work.
            container_side = _Background(lambda: _delete_container_side(args.netns, args.ifname))
            try:
                stale = self._release_and_forget(att, ds)
            except BaseException:
                container_side.settle()  # the datastore failure is the one to report
                raise
            if not container_side.result() and not stale:
                _delete_host_veth(att.host_ifname)  # the namespace is gone: the host end by its name

    def _release_and_forget(self, att: Attachment, ds: Datastore) -> bool:
        """Release this container's addresses and delete its endpoint; True when the endpoint
        belongs to another container of the same workload (a stale DEL: a sandbox recreated for
        the pod), which then keeps its endpoint, veth and addresses."""
        workload = att.workload
        ipam_reads = calico_ipam.release_reads(att.conf, workload) if att.uses_calico_ipam else []
        ds = Prefetched(ds, [att.endpoint_key, *ipam_reads], [])  # one round trip for all of them
        endpoint = ds.get(att.endpoint_key)
        owner = _endpoint_container(endpoint)
        stale = owner not in ("", att.args.container_id)
        if stale:
            log.warning("the endpoint %s belongs to container %s: releasing only what %s holds, "
                        "leaving the endpoint and its veth", att.endpoint_name, owner, att.args.container_id)
        if att.uses_calico_ipam:
            calico_ipam.release(att.conf, IpamClient(ds, att.node), workload, legacy=not stale)
        else:
            delegate(att.conf.ipam.type, "DEL", att.args)
        if endpoint is not None and not stale and not ds.delete(endpoint.key, endpoint.mod_revision):
            raise CniError(TRY_AGAIN_LATER, f"endpoint {att.endpoint_name} changed while being deleted; retry")
        return stale

    # ------------------------------------------------------------ CHECK

    def check(self, args: CmdArgs) -> None:
        with self._session(args) as (att, ds):
            if not att.conf.prevResult:
                raise CniError(INVALID_NETWORK_CONFIG, "CHECK needs prevResult in the network configuration")
            prev = Result.decode(att.conf.prevResult)
            addresses = [netaddr.IPNetwork(ip.address) for ip in prev.ips]
            if att.uses_calico_ipam:
                calico_ipam.check(att.conf, IpamClient(ds, att.node), args.container_id)
            else:
                delegate(att.conf.ipam.type, "CHECK", args)
            with netns.host() as host, Netns(args.netns) as container:
                _check_container(container, args.ifname, addresses)
                _check_host(host, att.host_ifname, addresses)
            _check_endpoint(ds, att, addresses)

    # ------------------------------------------------------------ STATUS, GC

    def status(self, args: CmdArgs) -> None:
        conf = parse_netconf(args.config, CalicoNetConf)
        if conf.ipam.type in ("calico-ipam", ""):
            calico_ipam.IpamPlugin(self.datastore_factory).status(args)
        else:
            delegate(conf.ipam.type, "STATUS", args)

    def gc(self, args: CmdArgs) -> None:
        valid = calico_ipam.valid_container_ids(args.config)  # refuse a malformed list before changing anything
        with self._session(args) as (att, ds):
            for kv in ds.list(keys.resource_prefix("workloadendpoints")):
                spec = json.loads(kv.value).get("spec", {})
                if spec.get("node") == att.node and spec.get("containerID") not in valid:
                    log.info("GC: removing endpoint %s", kv.key)
                    ds.delete(kv.key, kv.mod_revision)
            if att.uses_calico_ipam:
                calico_ipam.collect(att.conf, IpamClient(ds, att.node), valid)
        if not att.uses_calico_ipam:
            delegate(att.conf.ipam.type, "GC", args)


# ---------------------------------------------------------------- helpers


def _must(link: Any, name: str) -> Any:
    if link is None:
        raise CniError(DATAPLANE_FAILURE, f"interface {name} vanished while being configured")
    return link


def _endpoint_profile(att: Attachment) -> str:
    """A pod's namespace profile (`kns.<namespace>`), else the network's (named after it)."""
    return f"kns.{att.workload.namespace}" if att.workload.pod else att.conf.name


def _profile_resource(att: Attachment) -> Profile:
    """The profile to create when it is missing: a namespace's allows all (policies restrict it),
    a network's isolates the network (Calico's CNI plugin's)."""
    name = _endpoint_profile(att)
    return allow_all_profile(name) if att.workload.pod else network_profile(name)


def _host_route(address: netaddr.IPNetwork) -> netaddr.IPNetwork:
    """The workload's address narrowed to a host route: /32 or /128."""
    return netaddr.IPNetwork(f"{address.ip}/{32 if address.version == 4 else 128}")


def _endpoint_container(kv: KeyValue | None) -> str:
    """The container ID an endpoint record names ("" when there is none)."""
    return WorkloadEndpoint.model_validate_json(kv.value).spec.containerID or "" if kv else ""


def _delete_container_side(netns_path: str, ifname: str) -> bool:
    """Delete `ifname` inside the container's namespace; False when the namespace or it is gone."""
    if not netns_path or not os.path.exists(netns_path):
        return False
    try:
        with Netns(netns_path) as container:
            return container.delete_link(ifname)
    except CniError as exc:  # it went away meanwhile: as good as gone
        log.info("container side %s in %s: %s", ifname, netns_path, exc.msg)
        return False


def _delete_host_veth(name: str) -> bool:
    with netns.host() as host:
        return host.delete_link(name)  # takes the container side and /32 route with it


class _Background:
    """Run one call on a thread; result() waits and returns its value or raises its exception."""

    def __init__(self, call: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._taken = False  # result() has handed the outcome to the caller
        self._thread = threading.Thread(target=logs.in_this_call(self._run), args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Any) -> None:
        try:
            self._value = call()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        self._taken = True
        if self._error is not None:
            raise self._error
        return self._value

    def settle(self) -> None:
        """Wait for the call; a failure nobody took with result() is logged (another failure is
        the one being reported)."""
        self._thread.join()
        if self._error is not None and not self._taken:
            log.warning("also failed: %s", self._error)


def _write_with_profile(ds: Datastore, key: str, endpoint: str, profile: Profile) -> None:
    """Write the endpoint and, in the same transaction, its profile when that is missing or is
    still the allow-all one older versions gave every network (see profile_write): a read (with
    calico-ipam, already made with IPAM's first reads) and a write. The profile is shared by every
    endpoint of the network and never undone; an endpoint that changed under us is a retry for
    the caller."""
    name = profile.metadata.name
    profile_at = profile_key(name)
    found = ds.get_many([key, profile_at])
    expect = {key: found[key].mod_revision if found[key] else 0}
    stored = found[profile_at]
    try:
        document = profile_to_write(stored.value if stored else None, profile)
    except InvalidProfile as exc:
        raise CniError(INVALID_NETWORK_CONFIG, f"cannot write profile {name!r}: {exc}",
                       "a network's profile is named after the network and labels its endpoints with "
                       "that name: at most 63 lower case letters, digits, '-' and '.'") from None
    if document is not None:
        profile_expect = {profile_at: stored.mod_revision if stored else 0}
        if ds.txn({**expect, **profile_expect}, {key: endpoint, profile_at: document}):
            return
        # Lost a race, maybe only to another endpoint of the network writing the profile first.
    if ds.txn(expect, {key: endpoint}):
        return
    raise CniError(TRY_AGAIN_LATER, f"endpoint {key.rsplit('/', 1)[1]} changed while being written; retry")


def _delete_key(ds: Datastore, key: str) -> None:
    """Gone whatever it holds, and fine if already gone: one unconditional delete."""
    ds.txn({}, delete=[key])


def _result(att: Attachment, host_ifname: str, container_mac: str, addresses: list[netaddr.IPNetwork]) -> Result:
    routes = []
    if any(a.version == 4 for a in addresses):
        routes.append(Route(dst="0.0.0.0/0"))
    if any(a.version == 6 for a in addresses):
        routes.append(Route(dst="::/0"))
    return Result(
        interfaces=[Interface(name=host_ifname, mac=HOST_MAC),
                    Interface(name=att.args.ifname, mac=container_mac, sandbox=att.args.netns)],
        ips=[IPConfig(address=str(_host_route(a)), interface=1) for a in addresses],
        routes=routes)


def _check_container(container: Netns, ifname: str, addresses: list[netaddr.IPNetwork]) -> None:
    link = container.link(ifname)
    if link is None:
        raise CniError(CHECK_FAILED, f"interface {ifname} is missing from {container.label}")
    have = {str(a) for a in container.addresses(link.index)}
    for address in addresses:
        if str(_host_route(address)) not in have:
            raise CniError(CHECK_FAILED, f"{ifname} lacks address {_host_route(address)}",
                           f"it has {sorted(have) or 'none'}")
    for version, gateway in ((4, GATEWAY_V4), (6, GATEWAY_V6)):
        if any(a.version == version for a in addresses):
            default = "0.0.0.0/0" if version == 4 else "::/0"
            if (default, gateway) not in container.routes(link.index, version):
                raise CniError(CHECK_FAILED, f"{ifname} lacks the default route via {gateway}")


def _check_host(host: Netns, ifname: str, addresses: list[netaddr.IPNetwork]) -> None:
    link = host.link(ifname)
    if link is None:
        raise CniError(CHECK_FAILED, f"host interface {ifname} is missing")
    if not link.up:
        raise CniError(CHECK_FAILED, f"host interface {ifname} is down")
    for address in addresses:
        routes = host.routes(link.index, address.version)
        if (str(_host_route(address)), None) not in routes:
            raise CniError(CHECK_FAILED, f"host route {_host_route(address)} dev {ifname} is missing")


def _check_endpoint(ds: Datastore, att: Attachment, addresses: list[netaddr.IPNetwork]) -> None:
    kv = ds.get(att.endpoint_key)
    if kv is None:
        raise CniError(CHECK_FAILED, f"workload endpoint {att.endpoint_key} is missing from etcd")
    spec = WorkloadEndpoint.model_validate_json(kv.value).spec
    if spec.containerID != att.args.container_id:
        raise CniError(CHECK_FAILED, f"workload endpoint {att.endpoint_name} belongs to container {spec.containerID}",
                       f"not to {att.args.container_id}: this attachment was replaced by a newer one")
    wanted = sorted(str(_host_route(a)) for a in addresses)
    if sorted(spec.ipNetworks) != wanted or spec.interfaceName != att.host_ifname:
        raise CniError(CHECK_FAILED, f"workload endpoint {kv.key.rsplit('/', 1)[1]} does not match",
                       f"has {spec.ipNetworks} on {spec.interfaceName}, expected {wanted} on {att.host_ifname}")


def delegate(plugin: str, command: str, args: CmdArgs) -> dict[str, Any]:
    """Exec an IPAM plugin from CNI_PATH with the raw config and the caller's environment."""
    for directory in args.path:
        binary = os.path.join(directory, plugin)
        if os.access(binary, os.X_OK):
            break
    else:
        raise CniError(DELEGATE_FAILURE, f"IPAM plugin {plugin!r} not found in CNI_PATH",
                       f"searched {':'.join(args.path) or '(empty CNI_PATH)'}")
    env = {**args.env, "CNI_COMMAND": command}
    proc = subprocess.run([binary], input=args.stdin_data, capture_output=True, env=env, timeout=120)
    out = proc.stdout.decode().strip()
    try:
        reply = json.loads(out) if out else {}
    except ValueError:
        raise CniError(DELEGATE_FAILURE, f"IPAM plugin {plugin} printed invalid JSON", out[:200]) from None
    if proc.returncode != 0:
        raise CniError(int(reply.get("code", DELEGATE_FAILURE)), f"IPAM plugin {plugin}: {reply.get('msg', out)}",
                       str(reply.get("details", "")))
    return reply

