"""cni-calico: Calico-style layer-3 container networking."""

__version__ = "0.1.0"
