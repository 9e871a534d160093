"""The CRI messages tests/cri.py builds at run time, checked byte for byte against the field
numbers of k8s.io/cri-api's runtime/v1 api.proto (pure: no runtime)."""

from __future__ import annotations

from .cri import build, to_dict


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2) with a one-byte length."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_run_pod_sandbox_request_has_api_protos_field_numbers() -> None:
    request = build("RunPodSandboxRequest", {"config": {
        "metadata": {"name": "web", "uid": "u1", "namespace": "ns", "attempt": 1},
        "labels": {"a": "b"}, "linux": {"cgroup_parent": "/x"}}, "runtime_handler": "runc"})
    metadata = _field(1, b"web") + _field(2, b"u1") + _field(3, b"ns") + bytes([4 << 3, 1])  # attempt: varint
    config = _field(1, metadata) + _field(6, _field(1, b"a") + _field(2, b"b")) + _field(8, _field(1, b"/x"))
    assert request.SerializeToString() == _field(1, config) + _field(2, b"runc")


def test_status_response_decodes_network_ip_info_and_state() -> None:
    status = _field(1, b"id1") + bytes([3 << 3, 1]) + _field(5, _field(1, b"10.0.0.1"))  # state 1: NOTREADY
    wire = _field(1, status) + _field(2, _field(1, b"info") + _field(2, b"{}"))
    decoded = to_dict(build("PodSandboxStatusResponse").FromString(wire))
    assert decoded["status"]["id"] == "id1" and decoded["status"]["state"] == "SANDBOX_NOTREADY"
    assert decoded["status"]["network"] == {"ip": "10.0.0.1", "additional_ips": []}
    assert decoded["info"] == {"info": "{}"}


def test_exec_sync_carries_command_timeout_and_bytes_back() -> None:
    request = build("ExecSyncRequest", {"container_id": "c", "cmd": ["ping", "-c1"], "timeout": 10})
    assert request.SerializeToString() == _field(1, b"c") + _field(2, b"ping") + _field(2, b"-c1") + bytes([3 << 3, 10])
    response = build("ExecSyncResponse").FromString(_field(1, b"out\xff") + bytes([3 << 3, 2]))
    assert to_dict(response) == {"stdout": b"out\xff", "stderr": b"", "exit_code": 2}
