"""A Kubernetes API server stand-in for the tests and the demo (see cni_calico.lab.k8s_api).

store: objects, versions, history | registry: REST semantics | strategies: per-kind rules |
selectors, patches, options, validation: pure helpers | watch: one watch's events |
server, routes, discovery, auth: HTTPS | certs, kubeconfig: credentials on disk.
"""
