"""Standard gRPC health and server reflection on the real daemon (what load balancers and grpcurl use)."""

from __future__ import annotations

import grpc
import pytest
from fpgacsp_proto.v1 import admin_pb2, solver_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from .wire import RPC_TIMEOUT_S, Stubs, expect_error

SOLVER = solver_pb2.DESCRIPTOR.services_by_name["Solver"]
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"]


@pytest.mark.parametrize("service", ["", "fpgacsp.v1.Solver"])
def test_health_is_serving_when_ready(stubs: Stubs, service: str) -> None:
    health = health_pb2_grpc.HealthStub(stubs.channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_health_of_an_unknown_service_is_not_found(tcp: Stubs) -> None:
    health = health_pb2_grpc.HealthStub(tcp.channel)
    req = health_pb2.HealthCheckRequest(service="no.such.Service")
    expect_error(lambda: health.Check(req, timeout=RPC_TIMEOUT_S), grpc.StatusCode.NOT_FOUND)


def test_health_watch_streams_the_current_status(tcp: Stubs) -> None:
    health = health_pb2_grpc.HealthStub(tcp.channel)
    stream = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)
    try:
        assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stream.cancel()


def test_reflection_lists_the_services(tcp: Stubs) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(tcp.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"fpgacsp.v1.Solver", "fpgacsp.v1.Admin", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("service", [SOLVER, ADMIN], ids=["Solver", "Admin"])
def test_reflection_serves_the_full_descriptors(stubs: Stubs, service: ServiceDescriptor) -> None:
    """A generic client (grpcurl) can rebuild every method and message of the contract from the server alone."""
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(stubs.channel))
    remote = pool.FindServiceByName(service.full_name)
    local_methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in service.methods}
    remote_methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in remote.methods}
    assert remote_methods == local_methods
    request = pool.FindMessageTypeByName("fpgacsp.v1.SolveRequest")
    assert [f.name for f in request.fields] == [f.name for f in solver_pb2.SolveRequest.DESCRIPTOR.fields]
