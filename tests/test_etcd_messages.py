"""etcd3's message modules rebuilt from their descriptors (cni_calico.datastore.etcd_messages).

The etcd tiers (datastore contract, IPAM on etcd, watches) exercise every message on a real
etcd; these check the rebuild itself in a fresh interpreter, where etcd3 is first imported."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from cni_calico.datastore import etcd_messages

PROBE = r"""
import json
from cni_calico.datastore import etcd_messages
etcd_messages.install()
import etcd3
from etcd3 import etcdrpc
from google.protobuf.internal import api_implementation
req = etcdrpc.RangeRequest(key=b"a", range_end=b"b", sort_order=etcdrpc.RangeRequest.DESCEND)
put = etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=b"k", value=b"v"))
print(json.dumps({
    "backend": api_implementation.Type(),
    "range": req.SerializeToString().hex(),
    "put": put.SerializeToString().hex(),
    "parsed": etcdrpc.RangeRequest.FromString(req.SerializeToString()).range_end.decode(),
    "enum": [etcdrpc.Compare.EQUAL, etcdrpc.Compare.GREATER, etcdrpc.NOSPACE],
    "kv": etcd3.etcdrpc.kv_pb2.Event.DELETE,
    "module": etcdrpc.RangeRequest.__module__,
    "stub": hasattr(etcdrpc, "KVStub"),
}))
"""


@pytest.fixture(scope="module")
def probe():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_modules_run_on_protobufs_c_backend(probe):
    assert probe["backend"] == "upb"
    assert probe["module"] == "etcd3.etcdrpc.rpc_pb2"
    assert probe["stub"]  # the gRPC stubs import the rebuilt module unchanged


def test_field_numbers_and_wire_bytes_are_etcds(probe):
    # RangeRequest: key = 1, range_end = 2 (bytes), sort_order = 5 (enum, DESCEND = 2)
    assert probe["range"] == "0a0161" + "120162" + "2802"
    # RequestOp.request_put = 2 holding PutRequest{key = 1, value = 2}
    assert probe["put"] == "1206" + "0a016b" + "120176"
    assert probe["parsed"] == "b"


def test_enums_keep_their_values(probe):
    # Compare.CompareResult: EQUAL 0, GREATER 1; AlarmType NOSPACE 1; mvccpb.Event DELETE 1
    assert probe["enum"] == [0, 1, 1]
    assert probe["kv"] == 1


def test_a_module_without_the_descriptor_is_an_import_error():
    code = compile("x = '\\nother.proto'\ny = b'\\x00'", "<generated>", "exec")
    with pytest.raises(ImportError, match=re.escape("rpc.proto")):
        etcd_messages.serialized_descriptor(code, "rpc.proto")


def test_the_descriptor_constant_is_found_as_str_or_bytes():
    head = "\n\x08kv.proto\x12\x06mvccpb"
    as_str = compile(f"d = {head!r}", "<generated>", "exec")
    as_bytes = compile(f"d = {head.encode('latin-1')!r}", "<generated>", "exec")
    assert etcd_messages.serialized_descriptor(as_str, "kv.proto") == head.encode("latin-1")
    assert etcd_messages.serialized_descriptor(as_bytes, "kv.proto") == head.encode("latin-1")


def test_other_modules_are_left_to_the_usual_finders():
    finder = etcd_messages._Finder()
    assert finder.find_spec("json", None) is None
    assert finder.find_spec("etcd3.client", None) is None
    etcdrpc_dir = os.path.join(importlib.util.find_spec("etcd3").submodule_search_locations[0], "etcdrpc")
    spec = finder.find_spec("etcd3.etcdrpc.kv_pb2", [etcdrpc_dir])
    assert spec is not None and isinstance(spec.loader, etcd_messages._RebuildingLoader)


def test_install_is_idempotent(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    etcd_messages.install()
    etcd_messages.install()
    assert sum(isinstance(f, etcd_messages._Finder) for f in sys.meta_path) == 1
    assert isinstance(sys.meta_path[0], etcd_messages._Finder)
