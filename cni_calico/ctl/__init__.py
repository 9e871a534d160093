"""calicoctl: the command line users manage cni-calico with."""
