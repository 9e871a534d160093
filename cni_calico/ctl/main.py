"""`calicoctl`: parse, connect, dispatch; the only place that turns errors into exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, NoReturn, Sequence, TextIO

from .. import __version__
from .errors import CtlError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _BadArguments(message)


class _BadArguments(Exception):
    """Worded by `run` as Calico words any bad command line (it names the whole line)."""


def _connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="calicoctl.cfg (default /etc/calico/calicoctl.cfg, else ETCD_* env)")


def parser() -> argparse.ArgumentParser:
    from ..node.main import add_agent_flags
    from . import node

    p = _Parser(prog="calicoctl", description="Manage cni-calico networking (resources in etcd, IPAM, this node).")
    commands = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    get = commands.add_parser("get", help="show resources")
    get.add_argument("kind", help="ippool, node, bgpconfig, bgppeer, profile, networkpolicy, globalnetworkpolicy, "
                                  "workloadendpoint, ipamconfig, clusterinformation (or their short names)")
    get.add_argument("names", nargs="*", help="names (a pool may be named by its CIDR)")
    get.add_argument("-o", "--output", default="ps", help="ps (default), wide, yaml (or yml) or json")
    get.add_argument("-n", "--namespace")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.set_defaults(handler=_with_store("get"))

    for verb, text in (("create", "create resources from a file"), ("apply", "create or update resources"),
                       ("replace", "update existing resources")):
        sub = commands.add_parser(verb, help=text)
        sub.add_argument("-f", "--filename", required=True, help="YAML or JSON file, or - for stdin")
        sub.add_argument("-n", "--namespace")
        if verb == "create":
            sub.add_argument("--skip-exists", action="store_true", help="count a resource that exists as created")
        sub.set_defaults(handler=_with_store(verb))

    delete = commands.add_parser("delete", help="delete resources by name or from a file")
    delete.add_argument("kind", nargs="?")
    delete.add_argument("names", nargs="*")
    delete.add_argument("-f", "--filename")
    delete.add_argument("-n", "--namespace")
    delete.add_argument("-s", "--skip-not-exists", action="store_true")
    delete.set_defaults(handler=_with_store("delete"))

    patch = commands.add_parser("patch", help="merge a JSON patch into one resource")
    patch.add_argument("kind")
    patch.add_argument("name")
    patch.add_argument("-p", "--patch", required=True, help='e.g. \'{"spec":{"disabled":true}}\'')
    patch.add_argument("-n", "--namespace")
    patch.set_defaults(handler=_with_store("patch"))

    ipam = commands.add_parser("ipam", help="IP address management")
    ipam_commands = ipam.add_subparsers(dest="ipam_command", required=True, parser_class=_Parser)
    show = ipam_commands.add_parser("show", help="addresses in use per pool (and block)")
    show.add_argument("--show-blocks", action="store_true")
    show.add_argument("--ip")
    show.set_defaults(handler=_with_store("ipam_show"))
    check = ipam_commands.add_parser("check", help="find leaked or inconsistent allocations")
    check.add_argument("-o", "--output", dest="report", help="write a report that `ipam release` can act on")
    check.add_argument("--show-problem-ips", action="store_true", help="list every problem address")
    check.set_defaults(handler=_with_store("ipam_check"))
    release = ipam_commands.add_parser("release", help="release addresses")
    release.add_argument("--ip", action="append", default=[], help="an address (comma list, or repeat)")
    release.add_argument("--from-report", help="release what an `ipam check -o` report found leaked")
    release.set_defaults(handler=_with_store("ipam_release"))
    configure = ipam_commands.add_parser("configure", help="IPAM settings")
    configure.add_argument("--strictaffinity", choices=["true", "false"])
    configure.add_argument("--max-blocks-per-host", type=int)
    configure.set_defaults(handler=_with_store("ipam_configure"))

    node_parser = commands.add_parser("node", help="this host's calico-node agent")
    node_commands = node_parser.add_subparsers(dest="node_command", required=True, parser_class=_Parser)
    run_parser = node_commands.add_parser("run", help="start calico-node on this host")
    add_agent_flags(run_parser)
    run_parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for the agent")
    run_parser.set_defaults(handler=node.run)
    status_parser = node_commands.add_parser("status", help="BGP sessions of this host")
    status_parser.set_defaults(handler=node.status)
    stop_parser = node_commands.add_parser("stop", help="stop the calico-node agent of this host (SIGTERM)")
    stop_parser.add_argument("--run-dir", dest="run_dir", help="its run directory (default $CALICO_RUN_DIR, "
                                                                "else /var/run/calico)")
    stop_parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for it to exit")
    stop_parser.set_defaults(handler=node.stop)

    convert = commands.add_parser("convert", help="print Kubernetes NetworkPolicy and Calico v1 resources as v3")
    convert.add_argument("-f", "--filename", required=True, help="YAML or JSON file, or - for stdin")
    convert.add_argument("-o", "--output", default="yaml", choices=("yaml", "yml", "json"),
                         help="yaml (default) or json")
    convert.set_defaults(handler=_convert)

    version = commands.add_parser("version", help="client and cluster versions")
    version.set_defaults(handler=_version)

    for sub in (get, delete, patch, show, check, release, configure, version,
                *(commands.choices[v] for v in ("create", "apply", "replace"))):
        _connection_flags(sub)
    return p


def _with_store(command: str) -> Callable[[argparse.Namespace, dict[str, str], TextIO], int]:
    def handler(args: argparse.Namespace, env: dict[str, str], out: TextIO) -> int:
        from . import connection, ipam
        from . import resource_commands as rc

        with connection.open_store(connection.resolve(args.config, env)) as ds:
            if command == "get":
                return rc.get(ds, args, out)
            if command in ("create", "apply", "replace"):
                return rc.write(ds, command, args, out)
            if command == "delete":
                return rc.delete(ds, args, out)
            if command == "patch":
                return rc.patch(ds, args, out)
            if command == "ipam_show":
                return ipam.show(ds, out, show_blocks=args.show_blocks, ip=args.ip)
            if command == "ipam_check":
                return ipam.check(ds, out, report_path=args.report, show_problem_ips=args.show_problem_ips)
            if command == "ipam_release":
                if not args.ip and not args.from_report:
                    raise CtlError("ipam release needs --ip or --from-report")
                ips = [ip for value in args.ip for ip in value.split(",") if ip]
                return ipam.release(ds, out, ips=ips, from_report=args.from_report)
            strict = None if args.strictaffinity is None else args.strictaffinity == "true"
            if strict is None and args.max_blocks_per_host is None:
                raise CtlError("ipam configure needs --strictaffinity or --max-blocks-per-host")
            return ipam.configure(ds, out, strict_affinity=strict, max_blocks_per_host=args.max_blocks_per_host)

    return handler


def _convert(args: argparse.Namespace, env: dict[str, str], out: TextIO) -> int:
    """No etcd: every document is read, converted and validated before anything is printed."""
    from . import documents, k8s_convert

    try:
        docs = documents.load(args.filename, sys.stdin)
    except documents.DocumentError as exc:
        raise CtlError(str(exc)) from None
    converted = []
    for doc in docs:
        try:
            converted.append(k8s_convert.to_v3(doc.data))
        except k8s_convert.ConversionError as exc:
            raise CtlError(f"{documents.describe(doc)}: {exc}") from None
    out.write(k8s_convert.render(converted, args.output))
    return 0


def _version(args: argparse.Namespace, env: dict[str, str], out: TextIO) -> int:
    """Calico's lines; the cluster's come from ClusterInformation, which calico-node writes."""
    from ..build_info import build_info
    from ..errors import CniError
    from . import connection, store
    from .kinds import known_kind

    commit, date = build_info()
    out.write(f"Client Version:    v{__version__}\nBuild date:        {date}\nGit commit:        {commit}\n")
    ref = store.Ref(known_kind("ClusterInformation"), "default")
    try:
        with connection.open_store(connection.resolve(args.config, env)) as ds:
            found = store.read(ds, ref)
    except CniError as exc:
        raise CtlError(f"Unable to retrieve Cluster Version or Type: {exc.msg}") from None
    if found is None:
        raise CtlError(f"Unable to retrieve Cluster Version or Type: {store.not_found(ref)}")
    spec: dict[str, Any] = found[0].get("spec", {})
    out.write(f"Cluster Version:   {spec.get('calicoVersion') or 'unknown'}\n")
    out.write(f"Cluster Type:      {spec.get('clusterType') or 'unknown'}\n")
    return 0


def run(argv: Sequence[str], env: dict[str, str], out: TextIO) -> int:
    from ..errors import CniError

    try:
        args = parser().parse_args(argv)
        return int(args.handler(args, env, out) or 0)
    except _BadArguments:
        print(f"Invalid option: 'calicoctl {' '.join(argv)}'. Use flag '--help' to read about a specific "
              "subcommand.", file=sys.stderr)
        return 1
    except CtlError as exc:  # worded as Calico prints its errors: no prefix
        print(str(exc), file=sys.stderr)
        return 1
    except CniError as exc:  # etcd unreachable and the like
        print(exc.msg, file=sys.stderr)
        return 1


def main() -> None:
    sys.exit(run(sys.argv[1:], dict(os.environ), sys.stdout))
