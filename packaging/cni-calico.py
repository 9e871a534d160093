"""PyInstaller entry for the one frozen bundle: calico, calico-ipam, calicoctl, calico-node and
calico-kube-controllers are names of the same executable (the name it runs by picks the command). No logic here."""

from cni_calico.cni.entrypoints import multicall

multicall()
