"""Process entry points. Only the standard library and the skel load before the command is known,
and a call the node agent can serve never loads more than the fast-path client."""

from __future__ import annotations

import io
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the CNI path
if TYPE_CHECKING:
    from typing import Callable

    from .skel import Handlers


def _plugin(name: str, load: Callable[[], Handlers]) -> None:
    from .client import serve

    def standalone(stdin: bytes) -> None:
        from .skel import main

        main(load, io.BytesIO(stdin), name)

    serve(name, standalone)


def _load_ipam() -> Handlers:
    from ..ipam import IpamPlugin

    return IpamPlugin()


def _load_calico() -> Handlers:
    from ..plugin import CalicoPlugin

    return CalicoPlugin()


def calico_ipam() -> None:
    _plugin("calico-ipam", _load_ipam)


def calico() -> None:
    _plugin("calico", _load_calico)


def multicall() -> None:
    """One frozen bundle, several commands: the name it was run by picks the command."""
    from .client import COMMAND_ENV

    handed = os.environ.pop(COMMAND_ENV, None)  # not inherited by anything this call runs
    if handed in ("calico", "calico-ipam"):  # from the client executable: nobody serves this call
        from .skel import main

        main(_load_calico if handed == "calico" else _load_ipam, plugin=handed)
        return
    name = os.path.basename(sys.argv[0])
    if name == "calico":
        calico()
    elif name == "calico-ipam":
        calico_ipam()
    elif name == "calicoctl":
        from ..ctl.main import main as ctl_main

        ctl_main()
    elif name == "calico-node":
        from ..node.main import main as node_main

        node_main()
    elif name == "calico-kube-controllers":
        from ..kube.main import main as controllers_main

        controllers_main()
    else:
        print(f"cni-calico: run me as calico, calico-ipam, calicoctl, calico-node or calico-kube-controllers "
              f"(not {name!r})", file=sys.stderr)
        sys.exit(2)
