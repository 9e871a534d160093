"""PyInstaller entry for the calico-ipam binary: no logic here, tests import what this runs."""

from cni_calico.cni.entrypoints import calico_ipam

calico_ipam()
