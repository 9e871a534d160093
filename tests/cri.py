"""A small client of the Container Runtime Interface (k8s.io/cri-api, `runtime.v1`), as kubelet
speaks it to containerd: gRPC on a unix socket, with the messages built at run time from a
descriptor written here. Only the messages and fields the tests use are declared, each with the
field number of cri-api's `pkg/apis/runtime/v1/api.proto`; a field left out is skipped on the wire
by protobuf as any unknown field is, so a partial descriptor talks to the full API.

    with CriClient("/tmp/x/containerd.sock") as cri:
        sandbox = cri.call("RunPodSandbox", config={"metadata": {"name": "web", ...}})
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message, message_factory

PACKAGE = "runtime.v1"
SERVICE = f"{PACKAGE}.RuntimeService"

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {"string": F.TYPE_STRING, "bool": F.TYPE_BOOL, "bytes": F.TYPE_BYTES, "int32": F.TYPE_INT32,
           "int64": F.TYPE_INT64, "uint32": F.TYPE_UINT32}
MAP = "map<string,string>"

# message -> [(field, number, type)]; a type "repeated X" is a list of X, another message's name a
# nested message, MAP a map<string, string>, an ENUMS name an enum.
MESSAGES: dict[str, list[tuple[str, int, str]]] = {
    "VersionRequest": [("version", 1, "string")],
    "VersionResponse": [("version", 1, "string"), ("runtime_name", 2, "string"), ("runtime_version", 3, "string"),
                        ("runtime_api_version", 4, "string")],
    "PodSandboxMetadata": [("name", 1, "string"), ("uid", 2, "string"), ("namespace", 3, "string"),
                           ("attempt", 4, "uint32")],
    "LinuxPodSandboxConfig": [("cgroup_parent", 1, "string")],
    "PodSandboxConfig": [("metadata", 1, "PodSandboxMetadata"), ("hostname", 2, "string"),
                         ("log_directory", 3, "string"), ("labels", 6, MAP), ("annotations", 7, MAP),
                         ("linux", 8, "LinuxPodSandboxConfig")],
    "RunPodSandboxRequest": [("config", 1, "PodSandboxConfig"), ("runtime_handler", 2, "string")],
    "RunPodSandboxResponse": [("pod_sandbox_id", 1, "string")],
    "StopPodSandboxRequest": [("pod_sandbox_id", 1, "string")],
    "StopPodSandboxResponse": [],
    "RemovePodSandboxRequest": [("pod_sandbox_id", 1, "string")],
    "RemovePodSandboxResponse": [],
    "PodSandboxStatusRequest": [("pod_sandbox_id", 1, "string"), ("verbose", 2, "bool")],
    "PodIP": [("ip", 1, "string")],
    "PodSandboxNetworkStatus": [("ip", 1, "string"), ("additional_ips", 2, "repeated PodIP")],
    "PodSandboxStatus": [("id", 1, "string"), ("metadata", 2, "PodSandboxMetadata"), ("state", 3, "PodSandboxState"),
                         ("created_at", 4, "int64"), ("network", 5, "PodSandboxNetworkStatus"),
                         ("labels", 7, MAP), ("annotations", 8, MAP)],
    "PodSandboxStatusResponse": [("status", 1, "PodSandboxStatus"), ("info", 2, MAP)],
    "PodSandboxFilter": [("id", 1, "string")],
    "ListPodSandboxRequest": [("filter", 1, "PodSandboxFilter")],
    "PodSandbox": [("id", 1, "string"), ("metadata", 2, "PodSandboxMetadata"), ("state", 3, "PodSandboxState")],
    "ListPodSandboxResponse": [("items", 1, "repeated PodSandbox")],
    "ImageSpec": [("image", 1, "string")],
    "ContainerMetadata": [("name", 1, "string"), ("attempt", 2, "uint32")],
    "ContainerConfig": [("metadata", 1, "ContainerMetadata"), ("image", 2, "ImageSpec"),
                        ("command", 3, "repeated string"), ("args", 4, "repeated string"), ("log_path", 11, "string")],
    "CreateContainerRequest": [("pod_sandbox_id", 1, "string"), ("config", 2, "ContainerConfig"),
                               ("sandbox_config", 3, "PodSandboxConfig")],
    "CreateContainerResponse": [("container_id", 1, "string")],
    "StartContainerRequest": [("container_id", 1, "string")],
    "StartContainerResponse": [],
    "StopContainerRequest": [("container_id", 1, "string"), ("timeout", 2, "int64")],
    "StopContainerResponse": [],
    "RemoveContainerRequest": [("container_id", 1, "string")],
    "RemoveContainerResponse": [],
    "ExecSyncRequest": [("container_id", 1, "string"), ("cmd", 2, "repeated string"), ("timeout", 3, "int64")],
    "ExecSyncResponse": [("stdout", 1, "bytes"), ("stderr", 2, "bytes"), ("exit_code", 3, "int32")],
}
ENUMS = {"PodSandboxState": [("SANDBOX_READY", 0), ("SANDBOX_NOTREADY", 1)]}

METHODS = ("Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus", "ListPodSandbox",
           "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "ExecSync")


def _map_entry(name: str) -> descriptor_pb2.DescriptorProto:
    entry = descriptor_pb2.DescriptorProto(name=name)
    entry.options.map_entry = True
    for field_name, number in (("key", 1), ("value", 2)):
        entry.field.add(name=field_name, number=number, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    return entry


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of the declared subset of runtime.v1 (proto3)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="cni_calico_tests/cri_runtime_v1.proto", package=PACKAGE,
                                             syntax="proto3")
    for enum_name, values in ENUMS.items():
        enum = fdp.enum_type.add(name=enum_name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for msg_name, fields in MESSAGES.items():
        msg = fdp.message_type.add(name=msg_name)
        for field_name, number, declared in fields:
            kind = declared.removeprefix("repeated ")
            label = F.LABEL_OPTIONAL if kind == declared else F.LABEL_REPEATED
            field = msg.field.add(name=field_name, number=number, label=label)
            if kind == MAP:
                entry_name = "".join(part.title() for part in field_name.split("_")) + "Entry"
                msg.nested_type.append(_map_entry(entry_name))
                field.label, field.type = F.LABEL_REPEATED, F.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{msg_name}.{entry_name}"
            elif kind in SCALARS:
                field.type = SCALARS[kind]
            elif kind in ENUMS:
                field.type, field.type_name = F.TYPE_ENUM, f".{PACKAGE}.{kind}"
            elif kind in MESSAGES:
                field.type, field.type_name = F.TYPE_MESSAGE, f".{PACKAGE}.{kind}"
            else:
                raise ValueError(f"{msg_name}.{field_name}: unknown type {kind}")
    service = fdp.service.add(name="RuntimeService")
    for method in METHODS:
        service.method.add(name=method, input_type=f".{PACKAGE}.{method}Request",
                           output_type=f".{PACKAGE}.{method}Response")
    return fdp


_POOL = descriptor_pool.DescriptorPool()  # private: nothing lands in protobuf's default pool
_POOL.Add(file_descriptor())


def message_class(name: str) -> type[message.Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


def build(name: str, fields: dict[str, Any] | None = None) -> message.Message:
    """A message from a dict of its proto field names (nested dicts, lists, maps as dicts)."""
    return json_format.ParseDict(fields or {}, message_class(name)(), descriptor_pool=_POOL)


def to_dict(msg: message.Message) -> dict[str, Any]:
    """Field names as in the .proto, every field present (defaults too), enums by name."""
    out = json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                    always_print_fields_with_no_presence=True, descriptor_pool=_POOL)
    return _native(msg, out)


def _native(msg: message.Message, out: dict[str, Any]) -> dict[str, Any]:
    """json_format writes 64-bit integers as strings (JSON's numbers are doubles) and bytes as
    base64: back to int and bytes."""
    for field in msg.DESCRIPTOR.fields:
        if field.type in (F.TYPE_INT64, F.TYPE_UINT64) and field.name in out:
            out[field.name] = int(out[field.name])
        elif field.type == F.TYPE_BYTES and field.name in out:
            out[field.name] = getattr(msg, field.name)
        elif field.type == F.TYPE_MESSAGE and field.name in out and not field.message_type.GetOptions().map_entry:
            value = getattr(msg, field.name)
            if field.is_repeated:
                out[field.name] = [_native(m, d) for m, d in zip(value, out[field.name], strict=True)]
            else:
                out[field.name] = _native(value, out[field.name])
    return out


class CriClient:
    """runtime.v1.RuntimeService over a unix socket; `call` returns the response as a dict and
    raises grpc.RpcError as the server answers."""

    def __init__(self, socket_path: str, timeout: float = 60) -> None:
        import grpc

        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._stubs = {}
        for method in METHODS:
            request = message_class(f"{method}Request")
            response = message_class(f"{method}Response")
            self._stubs[method] = self.channel.unary_unary(f"/{SERVICE}/{method}",
                                                           request_serializer=request.SerializeToString,
                                                           response_deserializer=response.FromString)

    def call(self, method: str, *, deadline: float | None = None, **fields: Any) -> dict[str, Any]:
        """`fields`: the request's; `deadline`: seconds to wait for the answer (else the client's)."""
        request = build(f"{method}Request", fields)
        return to_dict(self._stubs[method](request, timeout=deadline or self.timeout))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
