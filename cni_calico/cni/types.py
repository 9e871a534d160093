"""Typed CNI edges: the network configuration we read and the results we write.

Results are kept in the 1.x shape internally and converted to the caller's
cniVersion on the way out (0.1/0.2 `ip4`/`ip6`; 0.3.x/0.4.0 add `ips[].version`).
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import netaddr
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import DECODING_FAILURE, INVALID_NETWORK_CONFIG, CniError
from ..model import labels
from .skel import version_tuple

DEFAULT_NODENAME_FILE = "/var/lib/calico/nodename"
DEFAULT_IPAM_LOCK_FILE = "/var/run/calico/ipam.lock"


class _Tolerant(BaseModel):
    # Runtimes and chained configs add keys of their own: unknown keys are tolerated.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class IpamConf(_Tolerant):
    type: str = ""
    ipv4_pools: list[str] = Field(default_factory=list)
    ipv6_pools: list[str] = Field(default_factory=list)
    # Calico spells these as strings "true"/"false".
    assign_ipv4: str | None = None
    assign_ipv6: str | None = None
    subnet: str | None = None  # "usePodCidr" in Calico's k8s mode; accepted and ignored here

    @field_validator("assign_ipv4", "assign_ipv6")
    @classmethod
    def _bool_string(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in ("true", "false"):
            raise ValueError('must be "true" or "false"')
        return value

    def wants_ipv4(self) -> bool:
        return (self.assign_ipv4 or "true").lower() == "true"

    def wants_ipv6(self) -> bool:
        return (self.assign_ipv6 or "false").lower() == "true"

    @field_validator("ipv4_pools", "ipv6_pools")
    @classmethod
    def _no_empty_names(cls, pools: list[str]) -> list[str]:
        if any(not p.strip() for p in pools):
            raise ValueError("pool names and CIDRs must not be empty")
        return pools


class NetConf(_Tolerant):
    """The part of a network configuration that calico and calico-ipam read."""

    cniVersion: str = "0.1.0"
    name: str
    type: str = ""
    datastore_type: str = "etcdv3"
    etcd_endpoints: str | None = None
    etcd_key_file: str | None = None
    etcd_cert_file: str | None = None
    etcd_ca_cert_file: str | None = None
    nodename: str | None = None
    nodename_file: str = DEFAULT_NODENAME_FILE
    nodename_file_optional: bool = True
    log_level: str = "warning"
    log_file_path: str | None = None
    ipam_lock_file: str = DEFAULT_IPAM_LOCK_FILE
    ipam: IpamConf = Field(default_factory=IpamConf)
    prevResult: dict[str, Any] | None = None
    runtimeConfig: dict[str, Any] = Field(default_factory=dict)

    @field_validator("datastore_type")
    @classmethod
    def _etcd_only(cls, value: str) -> str:
        if value not in ("etcdv3", ""):
            raise ValueError(f"datastore_type {value!r} is not supported (only etcdv3)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "warn", "error", "critical", "fatal", "panic"):
            raise ValueError(f"unknown log_level {value!r}")
        return value


class ContainerSettings(_Tolerant):
    allow_ip_forwarding: bool = False




class Label(_Tolerant):
    """One entry of the CNI convention `args.cni.labels` (Kubernetes label syntax)."""

    key: str
    value: str = ""

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        problem = labels.key_problem(key)
        if problem:
            raise ValueError(problem)
        return key

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        problem = labels.value_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class CniArgsSection(_Tolerant):
    labels: list[Label] = Field(default_factory=list)


class ConfArgs(_Tolerant):
    """The network configuration's `args`; `cni.labels` become the workload endpoint's labels,
    which policy selectors match (there is no API server to read pod labels from)."""

    cni: CniArgsSection = Field(default_factory=CniArgsSection)


class PolicyConf(_Tolerant):
    """`policy`: `type: k8s` reads each pod from the Kubernetes API (labels, service account,
    ports, IPAM annotations); the `k8s_*` keys are Calico's older way of reaching the API and
    override what the kubeconfig says."""

    type: str = ""
    k8s_api_root: str = ""
    k8s_auth_token: str = ""
    k8s_client_certificate: str = ""
    k8s_client_key: str = ""
    k8s_certificate_authority: str = ""

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in ("", "k8s"):
            raise ValueError(f'policy type {value!r} is not supported (only "k8s")')
        return value


class KubernetesConf(_Tolerant):
    """`kubernetes`: where the API is (`kubeconfig`, or `k8s_api_root`, which wins over it)."""

    kubeconfig: str = ""
    k8s_api_root: str = ""
    node_name: str = ""  # Calico's, for host-local's usePodCidr: accepted, not used


class FeatureControl(_Tolerant):
    """`feature_control`: what a pod's annotations may ask for beyond pools and addresses."""

    ip_addrs_no_ipam: bool = False
    floating_ips: bool = False


class CalicoNetConf(NetConf):
    """The calico plugin's configuration: NetConf plus the dataplane settings."""

    mtu: int = Field(default=1500, ge=68, le=65535)
    container_settings: ContainerSettings = Field(default_factory=ContainerSettings)
    args: ConfArgs = Field(default_factory=ConfArgs)
    policy: PolicyConf = Field(default_factory=PolicyConf)
    kubernetes: KubernetesConf = Field(default_factory=KubernetesConf)
    feature_control: FeatureControl = Field(default_factory=FeatureControl)

    @property
    def kubernetes_policy(self) -> bool:
        """Kubernetes mode: pods are read from the API."""
        return self.policy.type == "k8s"

    def labels(self) -> dict[str, str]:
        return {label.key: label.value for label in self.args.cni.labels}


ConfT = TypeVar("ConfT", bound=NetConf)


@overload
def parse_netconf(config: dict[str, Any]) -> NetConf: ...


@overload
def parse_netconf(config: dict[str, Any], model: type[ConfT]) -> ConfT: ...


def parse_netconf(config: dict[str, Any], model: type[NetConf] = NetConf) -> NetConf:
    """Validate a decoded network configuration; any problem is CNI code 7 naming the field."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise CniError(INVALID_NETWORK_CONFIG, f"invalid network configuration: {where}: {first['msg']}",
                       f"{exc.error_count()} problem(s)") from exc


# ---------------------------------------------------------------- results

class Interface(BaseModel):
    name: str
    mac: str | None = None
    mtu: int | None = None
    sandbox: str | None = None


class IPConfig(BaseModel):
    address: str  # CIDR notation: address/prefix
    gateway: str | None = None
    interface: int | None = None

    @property
    def version(self) -> int:
        return netaddr.IPNetwork(self.address).version


class Route(BaseModel):
    dst: str
    gw: str | None = None
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None


class DNS(BaseModel):
    nameservers: list[str] = Field(default_factory=list)
    domain: str | None = None
    search: list[str] = Field(default_factory=list)
    options: list[str] = Field(default_factory=list)


class Result(BaseModel):
    """A CNI result in the 1.x shape."""

    cniVersion: str = "1.1.0"
    interfaces: list[Interface] = Field(default_factory=list)
    ips: list[IPConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)

    def encode(self, version: str) -> dict[str, Any]:
        """The JSON object for a caller speaking `version`."""
        major = version_tuple(version)
        if major < (0, 3, 0):
            return self._encode_legacy(version)
        dns = self.dns.model_dump(exclude_none=True, exclude_defaults=True)
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [i.model_dump(exclude_none=True) for i in self.interfaces]
        ips = []
        for ip in self.ips:
            entry = ip.model_dump(exclude_none=True)
            if major < (1, 0, 0):
                entry = {"version": str(ip.version), **entry}
            ips.append(entry)
        if ips:
            out["ips"] = ips
        if self.routes:
            out["routes"] = [r.model_dump(exclude_none=True) for r in self.routes]
        out["dns"] = dns
        return out

    def _encode_legacy(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version}
        for family in (4, 6):
            ip = next((i for i in self.ips if i.version == family), None)
            if ip is None:
                continue
            entry: dict[str, Any] = {"ip": ip.address}
            if ip.gateway:
                entry["gateway"] = ip.gateway
            routes = [r.model_dump(exclude_none=True, include={"dst", "gw"}) for r in self.routes
                      if netaddr.IPNetwork(r.dst).version == family]
            if routes:
                entry["routes"] = routes
            out[f"ip{family}"] = entry
        out["dns"] = self.dns.model_dump(exclude_none=True, exclude_defaults=True)
        return out

    @classmethod
    def decode(cls, data: dict[str, Any]) -> Result:
        """Read a result of any supported version (a prevResult, a delegate's output)."""
        try:
            if "ip4" in data or "ip6" in data:
                return cls._decode_legacy(data)
            fields = {k: v for k, v in data.items() if k in ("interfaces", "ips", "routes", "dns")}
            fields["ips"] = [{k: v for k, v in ip.items() if k != "version"} for ip in fields.get("ips") or []]
            return cls.model_validate({"cniVersion": data.get("cniVersion", "1.1.0"), **fields})
        except (ValidationError, AttributeError, TypeError) as exc:
            raise CniError(DECODING_FAILURE, f"cannot read CNI result: {exc}") from exc

    @classmethod
    def _decode_legacy(cls, data: dict[str, Any]) -> Result:
        ips: list[IPConfig] = []
        routes: list[Route] = []
        for family in ("ip4", "ip6"):
            entry = data.get(family)
            if not entry:
                continue
            ips.append(IPConfig(address=entry["ip"], gateway=entry.get("gateway")))
            routes.extend(Route(**r) for r in entry.get("routes") or [])
        return cls(cniVersion=data.get("cniVersion", "0.2.0"), ips=ips, routes=routes,
                   dns=DNS.model_validate(data.get("dns") or {}))
