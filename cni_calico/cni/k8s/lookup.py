"""What an ADD in Kubernetes mode learns from the API: two GETs, the pod's namespace and the pod
(as Calico's plugin reads them; never a list, a watch or a write), turned into the endpoint's
facts and IPAM's annotations."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import quote

from ..types import CalicoNetConf
from . import ipam_annotations, settings
from .client import ClientFactory, one_shot
from .ipam_annotations import IpamAnnotations
from .pod import PodEndpoint, pod_endpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodInfo:
    endpoint: PodEndpoint
    ipam: IpamAnnotations


class Kubernetes:
    """The plugin's way to the API. `clients` lends a client for given settings: a new one per
    call standalone (`one_shot`), the agent's kept one on the fast path (`ClientPool.lend`);
    `read` and `service_account_dir` are seams for the files settings come from."""

    def __init__(self, clients: ClientFactory = one_shot, read: settings.Reader = settings.read_file,
                 service_account_dir: str = settings.SERVICE_ACCOUNT_DIR) -> None:
        self.clients = clients
        self.read = read
        self.service_account_dir = service_account_dir

    def read_pod(self, conf: CalicoNetConf, namespace: str, pod: str, env: Mapping[str, str]) -> PodInfo:
        started = time.perf_counter()
        api = settings.resolve(conf.kubernetes, conf.policy, env, self.read, self.service_account_dir)
        with self.clients(api) as client:
            ns_doc = client.get(f"/api/v1/namespaces/{quote(namespace, safe='')}", f"namespace {namespace}")
            pod_doc = client.get(f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}",
                                 f"pod {namespace}/{pod}")
        endpoint = pod_endpoint(pod_doc, ns_doc)
        ipam = ipam_annotations.read(endpoint.annotations, endpoint.namespace_annotations, conf)
        log.info("read pod %s/%s from the Kubernetes API at %s in %.1f ms", namespace, pod, api.url,
                 (time.perf_counter() - started) * 1e3)
        log.debug("pod %s/%s: labels %s, profiles %s, ports %s, IPAM %s", namespace, pod, endpoint.labels,
                  endpoint.profiles, endpoint.ports, ipam)
        return PodInfo(endpoint, ipam)
