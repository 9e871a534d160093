"""calico-node: the per-host agent (node registration, BIRD, IPIP, health)."""
