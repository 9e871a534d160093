"""The one error type of the project: a CNI error code, a message and details.

Every failure a user can see travels as a CniError; the skel turns it into the
CNI error JSON on stdout (plugins) and calicoctl into a one-line message.
"""

from __future__ import annotations

# Codes defined by the CNI specification (1.1.0).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
NOT_AVAILABLE_FOR_GC = 51

# Codes of our own (the spec reserves 100+ for plugins).
INTERNAL = 100
NO_POOLS = 101
POOL_EXHAUSTED = 102
ADDRESS_TAKEN = 103
ADDRESS_OUTSIDE_POOLS = 104
NO_ADDRESS_FOR_HANDLE = 105
UNKNOWN_POOL = 106
CHECK_FAILED = 107
DATAPLANE_FAILURE = 108
DELEGATE_FAILURE = 109
KUBERNETES_API_ERROR = 110  # the API answered, but not with the pod: not found, credentials refused, untrusted
INVALID_POD_ANNOTATION = 111  # a pod's (or namespace's) annotation is malformed or asks for a disabled feature


class CniError(Exception):
    """A failure with a CNI error code; `msg` is one line a user can act on."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, object]:
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.msg!r}, {self.details!r})"


class DatastoreUnavailable(CniError):
    """etcd cannot be reached (code 11): the one failure a caller may wait out and retry.

    calico-node and calicoctl catch this, not CniError, when they mean "etcd is down": any
    other CniError is a real problem of its own and must be reported as itself."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(TRY_AGAIN_LATER, msg, details)
