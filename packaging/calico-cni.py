"""PyInstaller entry for the small client executable that `calico` and `calico-ipam` point at:
it answers VERSION, hands calls to calico-node's fast path, else execs the full `cni-calico`.
No logic here."""

from cni_calico.cni.client import main

main()
