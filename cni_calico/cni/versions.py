"""The CNI spec versions this project speaks, and the VERSION reply. Standard library only, and
nothing else: the `calico` and `calico-ipam` clients answer VERSION from here without loading
more (runtimes such as podman call VERSION on every plugin before every ADD)."""

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]

# What json.dumps gives for {"cniVersion": LATEST_VERSION, "supportedVersions": [...]}, spelled
# out so answering VERSION does not import json.
_QUOTED_VERSIONS = ", ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
VERSION_REPLY = f'{{"cniVersion": "{LATEST_VERSION}", "supportedVersions": [{_QUOTED_VERSIONS}]}}'
