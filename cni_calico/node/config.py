"""The agent's settings, from Calico's environment variable names (flags override them)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import logs
from ..model.v3 import DEFAULT_POOL_CIDR

# Calico's variable -> our field. Anything else in the environment is ignored.
ENV_NAMES = {
    "NODENAME": "nodename",
    "CALICO_K8S_NODE_REF": "k8s_node_ref",
    "HOSTNAME_FILE": "nodename_file",
    "IP": "ip",
    "IP_AUTODETECTION_METHOD": "ip_autodetection_method",
    "AS": "as_number",
    "CALICO_NETWORKING_BACKEND": "backend",
    "ETCD_ENDPOINTS": "etcd_endpoints",
    "ETCD_KEY_FILE": "etcd_key_file",
    "ETCD_CERT_FILE": "etcd_cert_file",
    "ETCD_CA_CERT_FILE": "etcd_ca_cert_file",
    "NO_DEFAULT_POOLS": "no_default_pools",
    "CALICO_IPV4POOL_CIDR": "ipv4pool_cidr",
    "CALICO_IPV4POOL_BLOCK_SIZE": "ipv4pool_block_size",
    "CALICO_IPV4POOL_IPIP": "ipv4pool_ipip",
    "CALICO_IPV4POOL_NAT_OUTGOING": "ipv4pool_nat_outgoing",
    "CALICO_RUN_DIR": "run_dir",
    "CALICO_HEALTH_HOST": "health_host",
    "CALICO_HEALTH_PORT": "health_port",
    "CALICO_LOG_LEVEL": "log_level",
    "CALICO_LOG_FILE": "log_file",
    "CALICO_LOG_LEVEL_LIBRARIES": "log_level_libraries",
    "CALICO_BIRD_BINARY": "bird_binary",
    "CALICO_CNI_SOCKET": "cni_socket",
    "CALICO_CNI_WORKERS": "cni_workers",
    "CALICO_POLICY_DATAPLANE": "policy_dataplane",
    "FELIX_DEFAULTENDPOINTTOHOSTACTION": "endpoint_to_host_action",
    "CALICO_NFT_BINARY": "nft_binary",
}

_IPIP_MODES = {"": "Never", "never": "Never", "off": "Never", "false": "Never", "always": "Always",
               "crosssubnet": "CrossSubnet", "cross-subnet": "CrossSubnet"}


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodename: str | None = None
    # The Kubernetes Node this host is (its name as the kubelet registered it): written in the
    # Node's orchRefs, so calico-kube-controllers can tell when the Kubernetes node has gone.
    k8s_node_ref: str | None = None
    nodename_file: str = "/var/lib/calico/nodename"
    ip: str = "autodetect"  # "autodetect", "none", or an address with an optional prefix length
    ip_autodetection_method: str = "first-found"
    as_number: int | None = Field(default=None, ge=1, le=4294967295)
    backend: Literal["bird", "none"] = "bird"
    etcd_endpoints: str = "http://127.0.0.1:2379"
    etcd_key_file: str | None = None
    etcd_cert_file: str | None = None
    etcd_ca_cert_file: str | None = None
    no_default_pools: bool = False
    ipv4pool_cidr: str = DEFAULT_POOL_CIDR
    ipv4pool_block_size: int = 26
    ipv4pool_ipip: str = "Never"
    ipv4pool_nat_outgoing: bool = True
    run_dir: str = "/var/run/calico"
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=9099, ge=0, le=65535)  # 0: no health server
    log_level: str = "info"
    log_file: str | None = None  # followed when logrotate moves it; rotating it is logrotate's job
    log_level_libraries: str | None = None  # pyroute2, grpc, ...: WARNING unless asked for
    bird_binary: str = "bird"
    cni_socket: str = ""  # the CNI fast path: "" = <run_dir>/cni.sock, "none" = not served
    cni_workers: int = Field(default=8, ge=1, le=64)
    policy_dataplane: Literal["nftables", "none"] = "nftables"  # none: leave the firewall alone
    # After a workload's egress policy allows a packet to this host itself. Calico's default is
    # Drop, but its Kubernetes manifests set Accept (kubelet probes, DNS on the host): so do we.
    endpoint_to_host_action: Literal["Accept", "Drop", "Return"] = "Accept"
    nft_binary: str = ""  # "": nftables' library in-process; else this nft program, run per change

    @field_validator("log_level", "log_level_libraries")
    @classmethod
    def _log_level(cls, value: str | None) -> str | None:
        if value is not None:
            logs.parse_level(value)  # ValueError: unknown log level '...'
        return value

    @field_validator("endpoint_to_host_action", mode="before")
    @classmethod
    def _action(cls, value: object) -> object:
        return value.strip().capitalize() if isinstance(value, str) else value  # felix takes ACCEPT, Drop...

    @field_validator("policy_dataplane", mode="before")
    @classmethod
    def _dataplane(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("ipv4pool_ipip", mode="before")
    @classmethod
    def _ipip_mode(cls, value: object) -> str:
        mode = _IPIP_MODES.get(str(value).strip().lower())
        if mode is None:
            raise ValueError(f"CALICO_IPV4POOL_IPIP must be Never, Always or CrossSubnet, not {value!r}")
        return mode

    @field_validator("as_number", mode="before")
    @classmethod
    def _empty_as(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def log_settings(self) -> logs.LogSettings:
        libraries = self.log_level_libraries
        return logs.LogSettings(level=logs.parse_level(self.log_level), file_path=self.log_file,
                                libraries_level=logs.parse_level(libraries) if libraries else None,
                                max_size_mb=0)  # never rotated by the agent: followed when logrotate moves it

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)

    @property
    def bird_config(self) -> Path:
        return self.run_path / "bird.cfg"

    @property
    def bird_socket(self) -> Path:
        return self.run_path / "bird.ctl"

    @property
    def bird_pid(self) -> Path:
        return self.run_path / "bird.pid"

    @property
    def bird_log(self) -> Path:
        return self.run_path / "bird.log"

    @property
    def cni_socket_path(self) -> Path | None:
        if self.cni_socket.lower() == "none":
            return None
        return Path(self.cni_socket) if self.cni_socket else self.run_path / "cni.sock"

    @property
    def agent_pid(self) -> Path:
        return self.run_path / "calico-node.pid"


class ConfigError(ValueError):
    """A setting the agent cannot start with; the message names it."""


def load(env: Mapping[str, str], overrides: Mapping[str, object] | None = None) -> AgentConfig:
    values: dict[str, object] = {field: env[name] for name, field in ENV_NAMES.items() if env.get(name, "") != ""}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return AgentConfig.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        name = next((n for n, f in ENV_NAMES.items() if f == field), field)
        raise ConfigError(f"{name}: {err['msg']}") from None
