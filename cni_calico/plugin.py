"""calico: the CNI plugin that wires a workload into its host, Calico's way.

ADD: addresses from IPAM (calico-ipam in process, any other IPAM plugin by exec), a veth pair and
its configuration (the dataplane, `cni.dataplane`), then the WorkloadEndpoint in etcd. IPAM's etcd
work overlaps the making of the veth pair, and the endpoint's write overlaps the addresses and
routes going in (futures; all netlink stays on the calling thread). Every side effect pushes its
inverse on an undo stack, from the calling thread, unwound if a later step fails; the undo of work
in flight first waits for it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, TypeVar

import netaddr

from . import ipam as calico_ipam
from . import logs
from .allocation.client import IpamClient
from .cni.dataplane import HOST_MAC, LinuxDataplane, Wiring, host_route
from .cni.identity import (
    Workload,
    determine_nodename,
    endpoint_name,
    endpoint_namespace,
    handle_id,
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
from .model.keys import profile_key, workload_endpoint_key
from .model.v3 import (
    ObjectMeta,
    Profile,
    ProfileSpec,
    WorkloadEndpoint,
    WorkloadEndpointSpec,
    allow_all_profile,
    network_profile,
    to_json,
)

if TYPE_CHECKING:
    from .cni.k8s.lookup import Kubernetes, PodInfo

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Attachment:
    """Everything that names one attachment, derived once from the call."""

    conf: CalicoNetConf
    args: CmdArgs
    node: str
    workload: Workload
    pod: PodInfo | None = None  # Kubernetes mode: what the API says of the pod (read by ADD)

    @property
    def kubernetes_mode(self) -> bool:
        """`policy.type: k8s` and a pod: ADD reads the pod from the API."""
        return self.conf.kubernetes_policy and bool(self.workload.pod)

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

    @property
    def handle(self) -> str:
        return handle_id(self.conf.name, self.args.container_id)


# The process's threads for the etcd work that overlaps an ADD's or DEL's netlink work, shared by
# every plugin instance and call (threads are made at the first submit, not here).
_BACKGROUND = ThreadPoolExecutor(max_workers=32, thread_name_prefix="cni-background")


class CalicoPlugin:
    """The handlers. The datastore, the dataplane and the way to the Kubernetes API are seams:
    calico-node lends pooled etcd connections and kept API connections, and tests drive the
    handlers in process with an in-memory store, a throwaway host namespace, or a dataplane that
    fails or hangs."""

    def __init__(self, datastore_factory: calico_ipam.DatastoreFactory = calico_ipam.datastore_from_conf,
                 dataplane: LinuxDataplane | None = None, kubernetes: Kubernetes | None = None) -> None:
        self.datastore_factory = datastore_factory
        self.dataplane = dataplane or LinuxDataplane()
        self._kubernetes = kubernetes  # made at the first call in Kubernetes mode

    @staticmethod
    def _in_background(work: Callable[[], T]) -> Future[T]:
        return _BACKGROUND.submit(logs.in_this_call(work))  # its log lines name the call too

    @staticmethod
    def _attachment(args: CmdArgs) -> Attachment:
        conf = parse_netconf(args.config, CalicoNetConf)
        node = determine_nodename(conf.nodename, conf.nodename_file)
        return Attachment(conf, args, node, Workload.from_cni_args(args.container_id, args.args))

    @contextmanager
    def _session(self, args: CmdArgs, attachment: Attachment | None = None
                 ) -> Iterator[tuple[Attachment, Datastore]]:
        attachment = attachment or self._attachment(args)
        lock_dir = os.path.dirname(attachment.conf.ipam_lock_file or DEFAULT_IPAM_LOCK_FILE)
        with self.datastore_factory(attachment.conf, args.env) as datastore, \
                host_lock(attachment_lock_path(lock_dir, attachment.host_ifname)):
            yield attachment, datastore

    def _read_pod(self, att: Attachment) -> PodInfo:
        if self._kubernetes is None:
            from .cni.k8s.lookup import Kubernetes

            self._kubernetes = Kubernetes()
        return self._kubernetes.read_pod(att.conf, att.workload.namespace, att.workload.pod, att.args.env)

    # ------------------------------------------------------------ ADD

    def add(self, args: CmdArgs) -> dict[str, Any]:
        att = self._attachment(args)
        # Kubernetes mode: the pod is read from the API while the session and the sockets open.
        pod = self._in_background(lambda: self._read_pod(att)) if att.kubernetes_mode else None
        with self._session(args, att) as (att, ds), \
                self.dataplane.wiring(args.netns, att.host_ifname, args.ifname) as wiring:
            if pod is not None:
                att.pod = pod.result()  # a pod that is missing or asks for what cannot be: nothing is changed
            # The first round trip reads what IPAM reads first and the endpoint's and profile's
            # keys, all at once (at IPAM's first read, under its lock).
            reads, prefixes = calico_ipam.first_reads(att.conf, args.container_id, att.node) \
                if att.uses_calico_ipam else ([], [])
            batched = Prefetched(ds, [*reads, att.endpoint_key, profile_key(_endpoint_profile(att))], prefixes)
            if wiring.exists():
                existing = self._existing_attachment(att, batched, wiring)
                if existing is not None:
                    return existing.encode(att.conf.cniVersion)
            undo = UndoStack()  # unwound while the sockets its steps use are still open
            try:
                result = self._add(att, batched, wiring, undo)
            except BaseException:
                failed = undo.unwind()
                if failed:
                    log.error("ADD of %s left behind: %s", args.container_id, ", ".join(failed))
                raise
            return result.encode(att.conf.cniVersion)

    def _add(self, att: Attachment, ds: Datastore, wiring: Wiring, undo: UndoStack) -> Result:
        # IPAM talks to etcd while this thread makes the veth pair, which needs no address; its
        # undo, pushed now, waits for it and releases what it took.
        ipam = self._in_background(lambda: self._ipam_add(att, ds))
        undo.push("IPAM", lambda: self._release_after(ipam, att, ds))
        undo.push(f"host veth {att.host_ifname}", wiring.remove)  # first: creating may fail half way
        pair = wiring.create(att.conf.mtu)
        addresses = ipam.result()
        # Everything the endpoint says is known now: it is written while the addresses and
        # routes go in.
        endpoint = self._in_background(lambda: self._write_endpoint(att, ds, pair.container_mac, addresses))
        undo.push(f"endpoint {att.endpoint_name}", lambda: _forget_after(endpoint, ds, att.endpoint_key))
        wiring.configure(pair, addresses, att.conf.container_settings.allow_ip_forwarding)
        endpoint.result()
        return _result(att, att.host_ifname, pair.container_mac, addresses)

    def _ipam_add(self, att: Attachment, ds: Datastore) -> list[netaddr.IPNetwork]:
        conf, args = att.conf, att.args
        if att.pod is not None:  # the pod's IPAM annotations
            from .cni.k8s import ipam_annotations

            wanted = att.pod.ipam
            if wanted.no_ipam:
                log.info("addresses from %s, without IPAM: %s", ipam_annotations.IP_ADDRS_NO_IPAM,
                         ", ".join(wanted.no_ipam))
                return [netaddr.IPNetwork(n) for n in ipam_annotations.host_networks(wanted.no_ipam)]
            conf, args = ipam_annotations.ipam_conf(conf, wanted), ipam_annotations.ipam_args(args, wanted)
        if att.uses_calico_ipam:
            result = calico_ipam.assign(conf, IpamClient(ds, att.node), args)
        else:
            result = Result.decode(delegate(att.conf.ipam.type, "ADD", att.args))
        if not result.ips:
            raise CniError(DELEGATE_FAILURE, f"IPAM {att.conf.ipam.type} returned no address")
        return [netaddr.IPNetwork(ip.address) for ip in result.ips]

    def _release_after(self, ipam: Future[list[netaddr.IPNetwork]], att: Attachment, ds: Datastore) -> None:
        """Undo IPAM once it has finished, whatever it did (a failed assignment already released
        its part; releasing again is harmless)."""
        _settle(ipam)
        if att.uses_calico_ipam:
            IpamClient(ds, att.node).release_handle(att.handle)
        else:
            delegate(att.conf.ipam.type, "DEL", att.args)

    def _existing_attachment(self, att: Attachment, ds: Datastore, wiring: Wiring) -> Result | None:
        """ADD again for an attachment that exists (a runtime retrying, or two ADDs for one
        container, which take turns on the attachment lock): the same answer when its networking
        checks out; None once a broken one is torn down, to be made again with the addresses it
        holds. An interface this container's attachment does not account for is an error."""
        addresses = self._attachment_addresses(att, ds)
        if not addresses:
            raise CniError(DATAPLANE_FAILURE, f"interface {att.args.ifname} already exists in {att.args.netns}",
                           "no attachment of this container holds it; DEL the old attachment first")
        try:
            wiring.check(addresses)
            _check_endpoint(ds, att, addresses)
        except CniError as broken:
            log.warning("repeated ADD: %s; making the attachment again", broken.msg)
            wiring.remove_both_ends()
            return None
        log.info("repeated ADD: the attachment is in place; returning it as it is")
        return _result(att, att.host_ifname, wiring.container_mac(), addresses)

    def _attachment_addresses(self, att: Attachment, ds: Datastore) -> list[netaddr.IPNetwork]:
        """What this container's attachment holds: its endpoint's addresses, else (an ADD that
        stopped before writing it) its IPAM handle's."""
        kv = ds.get(att.endpoint_key)
        if kv is not None:
            spec = WorkloadEndpoint.model_validate_json(kv.value).spec
            if spec.containerID == att.args.container_id and spec.endpoint == att.args.ifname:
                return [netaddr.IPNetwork(n) for n in spec.ipNetworks or ()]
        if att.uses_calico_ipam:
            return IpamClient(ds, att.node).addresses_of(att.handle)
        return []

    def _write_endpoint(self, att: Attachment, ds: Datastore, mac: str, addresses: list[netaddr.IPNetwork]) -> None:
        namespace = endpoint_namespace(att.workload)
        networks = [str(host_route(a)) for a in addresses]
        metadata: dict[str, Any] = {"name": att.endpoint_name, "namespace": namespace, "labels": {
            **att.conf.labels(),  # Calico's own labels below always win
            "projectcalico.org/namespace": namespace,
            "projectcalico.org/orchestrator": att.workload.orchestrator,
        }}
        spec: dict[str, Any] = {
            "orchestrator": att.workload.orchestrator, "workload": att.workload.pod or att.args.container_id,
            "pod": att.workload.pod, "node": att.node, "containerID": att.args.container_id,
            "endpoint": att.args.ifname, "interfaceName": att.host_ifname, "mac": mac,
            "ipNetworks": networks, "profiles": [_endpoint_profile(att)]}
        if att.pod is not None:
            _add_pod_facts(metadata, spec, att.pod, networks)
        wep = WorkloadEndpoint(metadata=ObjectMeta.model_validate(metadata),
                               spec=WorkloadEndpointSpec.model_validate(spec))
        _write_with_profile(ds, att.endpoint_key, to_json(wep), _endpoint_profile(att), lambda: _profile_resource(att))

    # ------------------------------------------------------------ DEL

    def delete(self, args: CmdArgs) -> None:
        with self._session(args) as (att, ds):
            # Removing the container's end takes the pair and the host route with it, and is safe
            # whatever else happened: that namespace is this container's. The kernel's ~20 ms for
            # it overlap the datastore work.
            container_side = self._in_background(
                lambda: self.dataplane.remove_container_end(args.netns, args.ifname))
            try:
                stale = self._release_and_forget(att, ds)
            except BaseException:
                _settle(container_side)  # the datastore failure is the one to report
                raise
            if not container_side.result() and not stale:
                self.dataplane.remove_host_end(att.host_ifname)  # the namespace is gone: by its name

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
            with self.dataplane.wiring(args.netns, att.host_ifname, args.ifname) as wiring:
                wiring.check(addresses)
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


def _endpoint_profile(att: Attachment) -> str:
    """A pod's namespace profile (`kns.<namespace>`), else the network's (named after it)."""
    return f"kns.{att.workload.namespace}" if att.workload.pod else att.conf.name


def _profile_resource(att: Attachment) -> Profile:
    """The profile to create when it is missing: a namespace's allows all (policies restrict it),
    and in Kubernetes mode carries the namespace's labels as calico-kube-controllers writes them;
    a network's isolates the network (Calico's CNI plugin's)."""
    name = _endpoint_profile(att)
    if att.pod is not None:
        from .cni.k8s.pod import namespace_profile_spec

        return Profile(metadata=ObjectMeta(name=name),
                       spec=ProfileSpec.model_validate(
                           namespace_profile_spec(att.workload.namespace, att.pod.endpoint.namespace_labels)))
    return allow_all_profile(name) if att.workload.pod else network_profile(name)


def _add_pod_facts(metadata: dict[str, Any], spec: dict[str, Any], pod: PodInfo, networks: list[str]) -> None:
    """Kubernetes mode: the pod's labels (under Calico's own), service account, named ports,
    profiles and floating addresses."""
    from .cni.k8s.ipam_annotations import ip_nats

    facts = pod.endpoint
    metadata["labels"] = {**metadata["labels"], **facts.labels}
    if facts.generate_name:
        metadata["generateName"] = facts.generate_name
    spec["profiles"] = facts.profiles
    if facts.service_account:
        spec["serviceAccountName"] = facts.service_account
    if facts.ports:
        spec["ports"] = facts.ports
    if pod.ipam.floating_ips:
        spec["ipNATs"] = ip_nats(pod.ipam.floating_ips, networks)


def _endpoint_container(kv: KeyValue | None) -> str:
    """The container ID an endpoint record names ("" when there is none)."""
    return WorkloadEndpoint.model_validate_json(kv.value).spec.containerID or "" if kv else ""


def _write_with_profile(ds: Datastore, key: str, endpoint: str, name: str, profile: Callable[[], Profile]) -> None:
    """Write the endpoint and, in the same transaction, its profile when that is missing or is
    still the allow-all one older versions gave every network (see profile_write): a read (with
    calico-ipam, already made with IPAM's first reads) and a write. The profile is shared by every
    endpoint of the network and never undone; an endpoint that changed under us is a retry for
    the caller."""
    profile_at = profile_key(name)
    found = ds.get_many([key, profile_at])
    current = found[key]
    expect = {key: current.mod_revision if current else 0}
    stored = found[profile_at]
    try:
        document = profile_to_write(stored.value if stored else None, name, profile)
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


def _settle(work: Future[Any]) -> None:
    """Wait for work in flight; its failure, if any, is logged (another failure is being reported)."""
    error = work.exception()
    if error is not None:
        log.warning("also failed: %s", error)


def _forget_after(endpoint: Future[None], ds: Datastore, key: str) -> None:
    """Undo the endpoint's write once it has finished, if it was written (one that lost to
    another writer is not ours to delete)."""
    if endpoint.exception() is None:
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
        ips=[IPConfig(address=str(host_route(a)), interface=1) for a in addresses],
        routes=routes)


def _check_endpoint(ds: Datastore, att: Attachment, addresses: list[netaddr.IPNetwork]) -> None:
    kv = ds.get(att.endpoint_key)
    if kv is None:
        raise CniError(CHECK_FAILED, f"workload endpoint {att.endpoint_key} is missing from etcd")
    spec = WorkloadEndpoint.model_validate_json(kv.value).spec
    if spec.containerID != att.args.container_id:
        raise CniError(CHECK_FAILED, f"workload endpoint {att.endpoint_name} belongs to container {spec.containerID}",
                       f"not to {att.args.container_id}: this attachment was replaced by a newer one")
    wanted = sorted(str(host_route(a)) for a in addresses)
    if sorted(spec.ipNetworks or ()) != wanted or spec.interfaceName != att.host_ifname:
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
    proc = subprocess.run([binary], input=args.stdin_data, capture_output=True, env=env, timeout=120, check=False)
    out = proc.stdout.decode().strip()
    try:
        reply = json.loads(out) if out else {}
    except ValueError:
        raise CniError(DELEGATE_FAILURE, f"IPAM plugin {plugin} printed invalid JSON", out[:200]) from None
    if proc.returncode != 0:
        raise CniError(int(reply.get("code", DELEGATE_FAILURE)), f"IPAM plugin {plugin}: {reply.get('msg', out)}",
                       str(reply.get("details", "")))
    return reply

