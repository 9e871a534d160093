"""The IPAM annotations of Calico's plugin, read from a pod and its namespace. Pure.

- `cni.projectcalico.org/ipv4pools`, `ipv6pools`: a JSON list of pool CIDRs or names: the
  pod's, else its namespace's, else `ipam.ipv4_pools`/`ipv6_pools` (calico-ipam only; another
  IPAM plugin ignores them, as in Calico);
- `cni.projectcalico.org/ipAddrs` (pod only): a JSON list of at most one IPv4 and one IPv6
  address, asked of calico-ipam (as `IP=` in CNI_ARGS);
- `cni.projectcalico.org/ipAddrsNoIpam` (pod only, `feature_control.ip_addrs_no_ipam`): the
  same shape, used as they are, without IPAM;
- `cni.projectcalico.org/floatingIPs` (pod only, `feature_control.floating_ips`): a JSON list
  of addresses, each NATed to the pod's address of its family (the endpoint's `ipNATs`).

A malformed value, both address annotations at once, or a feature not enabled is CNI error 111,
found before anything is changed.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence, TypeVar

from ...errors import INVALID_POD_ANNOTATION, CniError
from ..skel import CmdArgs
from ..types import CalicoNetConf, NetConf

PREFIX = "cni.projectcalico.org/"
IPV4_POOLS = PREFIX + "ipv4pools"
IPV6_POOLS = PREFIX + "ipv6pools"
IP_ADDRS = PREFIX + "ipAddrs"
IP_ADDRS_NO_IPAM = PREFIX + "ipAddrsNoIpam"
FLOATING_IPS = PREFIX + "floatingIPs"

ConfT = TypeVar("ConfT", bound=NetConf)


@dataclass(frozen=True)
class IpamAnnotations:
    """What the annotations ask of IPAM and the endpoint (None / empty: nothing)."""

    ipv4_pools: list[str] | None = None
    ipv6_pools: list[str] | None = None
    ip_addrs: tuple[str, ...] = ()
    no_ipam: tuple[str, ...] = ()
    floating_ips: tuple[str, ...] = ()


def read(pod: Mapping[str, str], namespace: Mapping[str, str], conf: CalicoNetConf) -> IpamAnnotations:
    calico_ipam = conf.ipam.type in ("calico-ipam", "")
    pools: dict[str, list[str] | None] = {}
    for key in (IPV4_POOLS, IPV6_POOLS):
        source = pod if pod.get(key) else namespace  # an empty value is no value (as Calico)
        pools[key] = _pools(key, source[key], "pod" if source is pod else "namespace") \
            if calico_ipam and source.get(key) else None
    ip_addrs = _addresses(IP_ADDRS, pod[IP_ADDRS]) if pod.get(IP_ADDRS) else ()
    no_ipam = _addresses(IP_ADDRS_NO_IPAM, pod[IP_ADDRS_NO_IPAM]) if pod.get(IP_ADDRS_NO_IPAM) else ()
    if ip_addrs and no_ipam:
        raise CniError(INVALID_POD_ANNOTATION, f"a pod cannot have both {IP_ADDRS} and {IP_ADDRS_NO_IPAM}")
    for key, wanted in ((IP_ADDRS, ip_addrs), (IP_ADDRS_NO_IPAM, no_ipam)):
        if wanted and not calico_ipam:
            raise CniError(INVALID_POD_ANNOTATION, f"{key} is not compatible with IPAM {conf.ipam.type}",
                           "only calico-ipam serves requested addresses")
    if no_ipam and not conf.feature_control.ip_addrs_no_ipam:
        raise CniError(INVALID_POD_ANNOTATION, f"{IP_ADDRS_NO_IPAM}: the feature is not enabled",
                       "set feature_control.ip_addrs_no_ipam in the network configuration")
    floating: tuple[str, ...] = ()
    if pod.get(FLOATING_IPS):
        if not conf.feature_control.floating_ips:
            raise CniError(INVALID_POD_ANNOTATION, f"{FLOATING_IPS}: the feature is not enabled",
                           "set feature_control.floating_ips in the network configuration")
        floating = tuple(str(a) for a in _address_list(FLOATING_IPS, pod[FLOATING_IPS]))
    return IpamAnnotations(ipv4_pools=pools[IPV4_POOLS], ipv6_pools=pools[IPV6_POOLS], ip_addrs=ip_addrs,
                           no_ipam=no_ipam, floating_ips=floating)


def ipam_conf(conf: ConfT, wanted: IpamAnnotations) -> ConfT:
    """The configuration calico-ipam assigns with: the annotations' pools over the config's."""
    update: dict[str, Any] = {}
    if wanted.ipv4_pools is not None:
        update["ipv4_pools"] = wanted.ipv4_pools
    if wanted.ipv6_pools is not None:
        update["ipv6_pools"] = wanted.ipv6_pools
    if not update:
        return conf
    return conf.model_copy(update={"ipam": conf.ipam.model_copy(update=update)})


def ipam_args(args: CmdArgs, wanted: IpamAnnotations) -> CmdArgs:
    """The call as calico-ipam sees it: the requested addresses as `IP=` (over any in CNI_ARGS)."""
    if not wanted.ip_addrs:
        return args
    return replace(args, args={**args.args, "IP": ",".join(wanted.ip_addrs)})


def host_networks(addresses: Sequence[str]) -> list[str]:
    """Addresses as the endpoint's networks: /32 or /128."""
    return [f"{a}/{32 if ipaddress.ip_address(a).version == 4 else 128}" for a in addresses]


def ip_nats(floating_ips: Sequence[str], pod_addresses: Sequence[str]) -> list[dict[str, str]]:
    """Each floating address NATed to the pod's address of its family; a family the pod has no
    address of is error 111."""
    own = {ipaddress.ip_address(a.split("/")[0]).version: a.split("/")[0] for a in pod_addresses}
    nats = []
    for external in floating_ips:
        version = ipaddress.ip_address(external).version
        if version not in own:
            raise CniError(INVALID_POD_ANNOTATION, f"{FLOATING_IPS}: {external} is IPv{version} and the pod has "
                           f"no IPv{version} address", f"the pod has {', '.join(pod_addresses) or 'none'}")
        nats.append({"internalIP": own[version], "externalIP": external})
    return nats


def _json_list(key: str, value: str) -> list[str]:
    try:
        items = json.loads(value)
    except ValueError:
        raise CniError(INVALID_POD_ANNOTATION, f"{key}: {value!r} is not JSON",
                       'expected a JSON list of strings, e.g. ["10.65.0.0/24"]') from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise CniError(INVALID_POD_ANNOTATION, f"{key}: {value!r} is not a JSON list of strings")
    return items


def _pools(key: str, value: str, where: str) -> list[str]:
    pools = _json_list(key, value)
    if any(not pool.strip() for pool in pools):
        raise CniError(INVALID_POD_ANNOTATION, f"{key} (on the {where}): pool names and CIDRs must not be empty")
    return pools


def _address_list(key: str, value: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    for text in _json_list(key, value):
        try:
            out.append(ipaddress.ip_address(text.strip()))
        except ValueError:
            raise CniError(INVALID_POD_ANNOTATION, f"{key}: {text!r} is not an IP address") from None
    if not out:
        raise CniError(INVALID_POD_ANNOTATION, f"{key} is set but empty")
    return out


def _addresses(key: str, value: str) -> tuple[str, ...]:
    """At most one IPv4 and one IPv6 address (a CNI interface gets one of each)."""
    addresses = _address_list(key, value)
    for version in (4, 6):
        if sum(1 for a in addresses if a.version == version) > 1:
            raise CniError(INVALID_POD_ANNOTATION, f"{key}: more than one IPv{version} address",
                           "at most one IPv4 and one IPv6 address")
    return tuple(str(a) for a in addresses)
