"""Process entry points. Only the standard library and the skel load before the command is known."""

from __future__ import annotations


def calico_ipam() -> None:
    from .skel import main

    def load():  # type: ignore[no-untyped-def]
        from .ipam import IpamPlugin

        return IpamPlugin()

    main(load)


def calico() -> None:
    from .skel import main

    def load():  # type: ignore[no-untyped-def]
        from .plugin import CalicoPlugin

        return CalicoPlugin()

    main(load)
