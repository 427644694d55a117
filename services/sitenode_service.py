"""The SiteNode gRPC service: translate, call the runtime, map errors. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from services import convert
from services.errors import mapped, mapped_stream
from services.stubs.gridmesh.v1 import sitenode_pb2, sitenode_pb2_grpc
from sitenode.errors import InvalidInput
from sitenode.events import EventType
from sitenode.runtime import NodeRuntime

SERVICE = sitenode_pb2.DESCRIPTOR.services_by_name["SiteNode"].full_name
OPERATOR_METHODS = frozenset(
    f"/{SERVICE}/{m}" for m in ("Optimize", "UpsertSession", "EndSession", "SetObjective", "SendCommand")
)


class SiteNodeServicer(sitenode_pb2_grpc.SiteNodeServicer):
    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime

    @mapped
    async def GetStatus(
        self, request: sitenode_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> sitenode_pb2.GetStatusResponse:
        return convert.status(self.runtime.status())

    @mapped
    async def ListAssets(
        self, request: sitenode_pb2.ListAssetsRequest, context: grpc.aio.ServicerContext
    ) -> sitenode_pb2.ListAssetsResponse:
        return sitenode_pb2.ListAssetsResponse(assets=[convert.asset(a) for a in self.runtime.assets()])

    @mapped
    async def GetSchedule(
        self, request: sitenode_pb2.GetScheduleRequest, context: grpc.aio.ServicerContext
    ) -> sitenode_pb2.GetScheduleResponse:
        stored = self.runtime.schedule()
        if stored is None:
            return sitenode_pb2.GetScheduleResponse()
        assignment = self.runtime.last_plan.charger_assignment if self.runtime.last_plan else {}
        return sitenode_pb2.GetScheduleResponse(schedule=convert.schedule(stored, assignment))

    @mapped
    async def Optimize(
        self, request: sitenode_pb2.OptimizeRequest, context: grpc.aio.ServicerContext
    ) -> sitenode_pb2.OptimizeResponse:
        out = await self.runtime.plan_now()
        stored = self.runtime.schedule()
        r, relax = out.plan.result, out.plan.relaxation
        return sitenode_pb2.OptimizeResponse(
            schedule=convert.schedule(stored, out.plan.charger_assignment)
            if stored and stored.version == out.version
            else None,
            status=str(r.status),
            total_cost=out.total_cost,
            baseline_total_cost=out.baseline_total_cost,
            ev_shortfall_kwh=relax.ev_shortfall_kwh,
            breach_kwh=relax.breach_kwh,
            relaxed=list(relax.stages),
            solve_seconds=r.total_seconds,
            commands_created=out.commands_created,
        )

    @mapped
    async def UpsertSession(
        self, request: sitenode_pb2.UpsertSessionRequest, context: grpc.aio.ServicerContext
    ) -> sitenode_pb2.UpsertSessionResponse:
        session = self.runtime.upsert_session(convert.session_in(request.session))
        return sitenode_pb2.UpsertSessionResponse(session=convert.session_out(session))

    @mapped
    async def EndSession(
        self, request: sitenode_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> sitenode_pb2.EndSessionResponse:
        if not request.session_id:
            raise InvalidInput.one("session_id", "is required")
        self.runtime.end_session(request.session_id)
        return sitenode_pb2.EndSessionResponse()

    @mapped
    async def SetObjective(
        self, request: sitenode_pb2.SetObjectiveRequest, context: grpc.aio.ServicerContext
    ) -> sitenode_pb2.SetObjectiveResponse:
        weights, priorities = convert.objective_in(request)
        return convert.objective_out(*self.runtime.set_objective(weights, priorities))

    @mapped
    async def SendCommand(
        self, request: sitenode_pb2.SendCommandRequest, context: grpc.aio.ServicerContext
    ) -> sitenode_pb2.SendCommandResponse:
        if request.type not in convert.COMMAND:
            raise InvalidInput.one("type", f"must be a command type, got {request.type}")
        if not request.asset_id:
            raise InvalidInput.one("asset_id", "is required")
        command = self.runtime.send_command(
            request.asset_id, convert.COMMAND[request.type], request.value_kw, request.ttl_seconds
        )
        return sitenode_pb2.SendCommandResponse(
            command_id=command.id, state=str(command.state), value_kw=command.value_kw or 0.0
        )

    @mapped_stream
    async def WatchEvents(
        self, request: sitenode_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[sitenode_pb2.WatchEventsResponse]:
        try:
            types = {EventType(t) for t in request.types} or None
        except ValueError:
            raise InvalidInput.one(
                "types", f"must name event types ({', '.join(EventType)}), got {list(request.types)}"
            ) from None
        subscription = self.runtime.bus.subscribe(types)
        try:
            async for event in subscription:
                yield convert.event(event)
        finally:
            subscription.close()
