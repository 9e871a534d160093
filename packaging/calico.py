"""PyInstaller entry for the calico binary: no logic here, tests import what this runs."""

from cni_calico.cni.entrypoints import calico

calico()
