"""Kubernetes mode of the calico plugin (`policy.type: k8s`): reach the API, read the pod and its
namespace, and turn them into what the endpoint and IPAM need.

- `kubeconfig`: a kubeconfig document and its current context (pure, but for the parse);
- `settings`: where the API is and how to authenticate, from the kubeconfig, the network
  config's overrides or the in-cluster service account (files read through a given reader);
- `client`: a minimal HTTPS client (http.client and ssl, imported only in this mode) and the
  agent's pool of kept connections;
- `pod`: a pod and its namespace as a workload endpoint's labels, ports and profiles (pure);
- `ipam_annotations`: the IPAM annotations, pod over namespace over network config (pure);
- `lookup`: the two GETs, and what they give the plugin.

Nothing here is imported unless a call is in Kubernetes mode.
"""
