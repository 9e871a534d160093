"""`calicoctl`: dispatch to the command modules; the only place that turns errors into exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence, TextIO

from .. import __version__
from .errors import CtlError


def parser() -> argparse.ArgumentParser:
    from ..node.main import add_agent_flags
    from . import node

    p = argparse.ArgumentParser(prog="calicoctl", description="Manage cni-calico networking.")
    commands = p.add_subparsers(dest="command", required=True)
    node_parser = commands.add_parser("node", help="this host's calico-node agent")
    node_commands = node_parser.add_subparsers(dest="node_command", required=True)
    run_parser = node_commands.add_parser("run", help="start calico-node on this host")
    add_agent_flags(run_parser)
    run_parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for the agent")
    run_parser.set_defaults(handler=node.run)
    status_parser = node_commands.add_parser("status", help="BGP sessions of this host")
    status_parser.set_defaults(handler=node.status)
    version_parser = commands.add_parser("version", help="print the version")
    version_parser.set_defaults(handler=lambda args, env, out: out.write(f"Client Version:    v{__version__}\n") and 0)
    return p


def run(argv: Sequence[str], env: dict[str, str], out: TextIO) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args, env, out) or 0)
    except CtlError as exc:
        print(f"calicoctl: {exc}", file=sys.stderr)
        return 1


def main() -> None:
    sys.exit(run(sys.argv[1:], dict(os.environ), sys.stdout))
