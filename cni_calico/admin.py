"""`calico-ipam-admin`: create pools, set IPAM config and look at allocations until calicoctl exists.

    calico-ipam-admin [--etcd-endpoints URL] pool add NAME CIDR [--block-size N] [--disabled]
                      [--node-selector SEL] [--nat-outgoing] [--ipip-mode Always|CrossSubnet|Never]
    calico-ipam-admin pool list | pool delete NAME
    calico-ipam-admin config [--strict-affinity true|false] [--max-blocks-per-host N]
    calico-ipam-admin show          # blocks, their node and usage
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Sequence, TextIO

from pydantic import ValidationError

from . import keys, selector
from .block import AllocationBlock
from .datastore import Datastore, open_datastore
from .errors import CniError
from .resources import IPAMConfig, IPPool, IPPoolSpec, Metadata, pool_key, to_json


class AdminError(Exception):
    """A one-line message for the user; the command exits 1."""


def create_pool(ds: Datastore, name: str, cidr: str, **spec: object) -> IPPool:
    """Validate and create an IPPool; refuses a duplicate name or an overlapping CIDR."""
    try:
        pool = IPPool(metadata=Metadata(name=name, creationTimestamp=datetime.now(timezone.utc).isoformat()),
                      spec=IPPoolSpec(cidr=cidr, **spec))
        selector.parse(pool.spec.nodeSelector)
    except (ValidationError, ValueError) as exc:
        raise AdminError(f"invalid pool {name!r}: {_first_error(exc)}") from None
    for kv in ds.list(keys.resource_prefix("ippools")):
        other = IPPool.model_validate_json(kv.value)
        if other.network.version == pool.network.version and (
                pool.network in other.network or other.network in pool.network):
            raise AdminError(f"pool {name} ({pool.network}) overlaps pool {other.name} ({other.network})")
    if not ds.create(pool_key(name), to_json(pool)):
        raise AdminError(f"pool {name!r} already exists")
    return pool


def delete_pool(ds: Datastore, name: str) -> None:
    kv = ds.get(pool_key(name))
    if kv is None or not ds.delete(kv.key, kv.mod_revision):
        raise AdminError(f"pool {name!r} does not exist")


def set_ipam_config(ds: Datastore, **changes: object) -> IPAMConfig:
    while True:
        kv = ds.get(keys.IPAM_CONFIG)
        current = IPAMConfig.model_validate_json(kv.value) if kv else IPAMConfig()
        config = IPAMConfig.model_validate({**current.model_dump(), **changes})
        if ds.txn({keys.IPAM_CONFIG: kv.mod_revision if kv else 0}, {keys.IPAM_CONFIG: config.to_json()}):
            return config


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
    return str(exc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calico-ipam-admin", description="Manage IP pools and IPAM settings in etcd.")
    parser.add_argument("--etcd-endpoints", default=None, help="default: $ETCD_ENDPOINTS or http://127.0.0.1:2379")
    sub = parser.add_subparsers(dest="command", required=True)
    pool = sub.add_parser("pool").add_subparsers(dest="action", required=True)
    add = pool.add_parser("add")
    add.add_argument("name")
    add.add_argument("cidr")
    add.add_argument("--block-size", type=int, default=None)
    add.add_argument("--disabled", action="store_true")
    add.add_argument("--node-selector", default="all()")
    add.add_argument("--nat-outgoing", action="store_true")
    add.add_argument("--ipip-mode", default="Never")
    pool.add_parser("list")
    delete = pool.add_parser("delete")
    delete.add_argument("name")
    config = sub.add_parser("config")
    config.add_argument("--strict-affinity", choices=["true", "false"])
    config.add_argument("--max-blocks-per-host", type=int)
    sub.add_parser("show")
    return parser


def run(argv: Sequence[str], env: dict[str, str], out: TextIO) -> int:
    args = _parser().parse_args(argv)
    with open_datastore(args.etcd_endpoints, env=env) as ds:
        if args.command == "pool" and args.action == "add":
            pool = create_pool(ds, args.name, args.cidr, blockSize=args.block_size, disabled=args.disabled,
                               nodeSelector=args.node_selector, natOutgoing=args.nat_outgoing,
                               ipipMode=args.ipip_mode)
            print(f"Successfully created IPPool {pool.name} ({pool.network})", file=out)
        elif args.command == "pool" and args.action == "delete":
            delete_pool(ds, args.name)
            print(f"Successfully deleted IPPool {args.name}", file=out)
        elif args.command == "pool":
            print(f"{'NAME':<24}{'CIDR':<28}{'BLOCKSIZE':<11}{'DISABLED':<10}SELECTOR", file=out)
            for kv in ds.list(keys.resource_prefix("ippools")):
                p = IPPool.model_validate_json(kv.value)
                print(f"{p.name:<24}{str(p.network):<28}{p.spec.block_prefixlen:<11}"
                      f"{str(p.spec.disabled).lower():<10}{p.spec.nodeSelector}", file=out)
        elif args.command == "config":
            changes: dict[str, object] = {}
            if args.strict_affinity:
                changes["strict_affinity"] = args.strict_affinity == "true"
            if args.max_blocks_per_host is not None:
                changes["max_blocks_per_host"] = args.max_blocks_per_host
            print(set_ipam_config(ds, **changes).to_json(), file=out)
        else:
            print(f"{'BLOCK':<28}{'NODE':<20}IN USE", file=out)
            for version in (4, 6):
                for kv in ds.list(keys.block_prefix(version)):
                    b = AllocationBlock.from_json(kv.value)
                    print(f"{b.cidr:<28}{b.host or '-':<20}{b.in_use}/{len(b.allocations)}", file=out)
    return 0


def main() -> None:
    import os

    try:
        status = run(sys.argv[1:], dict(os.environ), sys.stdout)
    except (AdminError, CniError) as exc:
        print(f"error: {getattr(exc, 'msg', exc)}", file=sys.stderr)
        status = 1
    sys.exit(status)
