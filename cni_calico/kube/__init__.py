"""calico-kube-controllers: Kubernetes objects kept in Calico's datastore.

`config` (settings from Calico's environment variables), `client` (the official Kubernetes client:
the only importer of `kubernetes`), `informer` (list + watch with resourceVersions, a cache per
resource), `workqueue`, `desired` (pure: the Calico objects Kubernetes objects call for),
`reconcile` (owned objects diffed against etcd, written compare-and-swap), `leaks` (pure: IPAM
allocations judged leaked), `leader` (one writer: an election on an etcd lease, every write fenced
by it), `controllers/` (one module per controller), `manager` (what the leader runs),
`compaction`, `metrics`, `main`.
"""
