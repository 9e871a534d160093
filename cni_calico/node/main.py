"""`calico-node`: run the agent in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Sequence


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="calico-node", description="The cni-calico node agent (BGP routing via BIRD).")
    add_agent_flags(p)
    return p


def add_agent_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared with `calicoctl node run` (Calico's names); unset flags fall back to the environment."""
    p.add_argument("--name", dest="nodename", help="node name (default: NODENAME, else the hostname)")
    p.add_argument("--ip", help="BGP IPv4 address, 'autodetect' (default) or 'none'")
    p.add_argument("--ip-autodetection-method", dest="ip_autodetection_method",
                   help="first-found, interface=REGEX, skip-interface=REGEX or cidr=CIDR")
    p.add_argument("--as", dest="as_number", help="AS number of this node (default: the cluster's, 64512)")
    p.add_argument("--backend", choices=["bird", "none"], help="networking backend (default bird)")
    p.add_argument("--run-dir", dest="run_dir", help="BIRD config, socket and pid files (default /var/run/calico)")
    p.add_argument("--nodename-file", dest="nodename_file", help="where the CNI plugin reads the node name")
    p.add_argument("--health-port", dest="health_port", help="health and metrics port on 127.0.0.1 (0: off)")
    p.add_argument("--log-level", dest="log_level")
    p.add_argument("--log-file", dest="log_file")


def overrides(args: argparse.Namespace) -> dict[str, object]:
    names = ("nodename", "ip", "ip_autodetection_method", "as_number", "backend", "run_dir", "nodename_file",
             "health_port", "log_level", "log_file")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def run(argv: Sequence[str], env: dict[str, str]) -> int:
    from .. import logs
    from ..datastore import EtcdSettings, open_datastore
    from ..errors import CniError
    from .agent import Agent
    from .config import ConfigError, load
    from .startup import StartupError

    args = parser().parse_args(argv)
    try:
        config = load(env, overrides(args))
    except ConfigError as exc:
        print(f"calico-node: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        settings = EtcdSettings(config.etcd_endpoints, config.etcd_key_file, config.etcd_cert_file,
                                config.etcd_ca_cert_file,
                                source="ETCD_ENDPOINTS" if env.get("ETCD_ENDPOINTS") else "the default")
        with open_datastore(settings) as ds:
            Agent(config, ds, stop).run()
    except (StartupError, OSError) as exc:
        print(f"calico-node: {exc}", file=sys.stderr)
        return 1
    except CniError as exc:
        print(f"calico-node: {exc.msg}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:], dict(os.environ)))
