"""The Portfolio gRPC service for operators: translate, call the hub and store, map errors."""

from __future__ import annotations

import asyncio
import functools
import operator
from collections.abc import AsyncIterator, Mapping

import grpc

from portfolio.report import SolveReport
from services import portfolio_convert as pc
from services.auth import Role, role_of
from services.convert import ts
from services.errors import mapped, mapped_stream
from services.portfolio_hub import PortfolioHub
from services.stubs.gridmesh.v1 import portfolio_pb2, portfolio_pb2_grpc
from sitenode.errors import InvalidInput, NotFound

SERVICE = portfolio_pb2.DESCRIPTOR.services_by_name["Portfolio"].full_name
LINK_SERVICE = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioLink"].full_name
OPERATOR_METHODS = frozenset(
    f"/{SERVICE}/{m}"
    for m in ("SetFeeder", "DeleteFeeder", "CreateFlexEvent", "CancelFlexEvent", "Solve", "SetSiteSettings")
)
# nodes prove who they are with certificates, not tokens
TOKEN_EXEMPT = (f"/{LINK_SERVICE}/",)


def _id(value: str, field: str) -> str:
    if not value:
        raise InvalidInput.one(field, "is required")
    return value


class PortfolioServicer(portfolio_pb2_grpc.PortfolioServicer):
    def __init__(self, hub: PortfolioHub, roles: Mapping[str, Role] | None = None) -> None:
        """`roles`: the operator tokens and their roles, the table the server's AuthInterceptor
        checks every call against (WhoAmI reads the caller's role from it)."""
        self.hub = hub
        self.roles = dict(roles or {})

    def _site_info(self, site_id: str) -> portfolio_pb2.SiteInfo:
        hub = self.hub
        record = hub.store.site(site_id)
        live = hub.sites.get(site_id)
        info = portfolio_pb2.SiteInfo(
            site_id=site_id,
            connected=site_id in hub.connections,
            feeder_ids=[f.feeder_id for f in hub.store.feeders() if site_id in f.site_ids],
        )
        if record is not None:
            info.first_seen.CopyFrom(ts(record.first_seen))
            info.last_seen.CopyFrom(ts(record.last_seen))
            info.software_version, info.schedule_version_held = record.software_version, record.schedule_version_held
        issued = hub.store.schedules(site_id, limit=1)
        if issued:
            info.schedule_version_issued, info.schedule_state, info.schedule_reason = (
                issued[0].version,
                str(issued[0].state),
                issued[0].reason,
            )
        if live is not None and live.latest is not None:
            info.latest.CopyFrom(live.latest)
            info.mode = live.latest.mode
        settings = hub.store.settings(site_id)
        if settings is not None:
            info.settings.CopyFrom(pc.settings_out(settings))
        today = hub.site_day(site_id)  # cached: worked out off the loop once per step at most, or on late data
        if today is not None:
            info.today.CopyFrom(today)
        return info

    def _known(self) -> list[str]:
        return sorted({r.site_id for r in self.hub.store.sites()} | set(self.hub.connections))

    @mapped
    async def ListSites(
        self, request: portfolio_pb2.ListSitesRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListSitesResponse:
        return portfolio_pb2.ListSitesResponse(sites=[self._site_info(s) for s in self._known()])

    @mapped
    async def GetSite(
        self, request: portfolio_pb2.GetSiteRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetSiteResponse:
        site_id = _id(request.site_id, "site_id")
        if site_id not in self._known():
            raise NotFound(f"no site {site_id!r}")
        out = portfolio_pb2.GetSiteResponse(site=self._site_info(site_id))
        issued = self.hub.store.schedules(site_id, limit=1)
        if issued:
            out.schedule.CopyFrom(portfolio_pb2.SetpointSchedule.FromString(issued[0].payload).schedule)
        live = self.hub.sites.get(site_id)
        if live is not None and live.snapshot_msg is not None:
            out.snapshot.CopyFrom(live.snapshot_msg)
        if live is not None:
            out.commands.extend(live.commands)
        return out

    def _flows(self) -> tuple[float, float, float, float]:
        points = [
            live.latest for s, live in self.hub.sites.items() if live.latest is not None and s in self.hub.connections
        ]
        return (
            sum(p.grid_import_kw for p in points),
            sum(p.grid_export_kw for p in points),
            sum(p.pv_kw for p in points),
            sum(p.ev_kw for p in points),
        )

    @mapped
    async def GetPortfolioState(
        self, request: portfolio_pb2.GetPortfolioStateRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetPortfolioStateResponse:
        hub = self.hub
        now = hub.clock.now()
        imp, exp, pv, ev = self._flows()
        out = portfolio_pb2.GetPortfolioStateResponse(
            now=ts(now),
            sites=len(self._known()),
            connected=len(hub.connections),
            import_kw=imp,
            export_kw=exp,
            pv_kw=pv,
            ev_kw=ev,
        )
        for f in hub.store.feeders():
            linked = [hub.sites[s] for s in f.site_ids if s in hub.sites]
            live = [site.latest for site in linked if site.latest is not None]
            state = portfolio_pb2.FeederState(
                feeder=pc.feeder_out(f),
                import_kw=sum(p.grid_import_kw - p.grid_export_kw for p in live),
                cap_kw=f.cap_at(0),
            )
            planned = [hub.planned[s] for s in f.site_ids if s in hub.planned]
            if planned and hub.planned_start is not None:
                total = functools.reduce(operator.add, planned)  # sum() would type as "array or 0"
                state.planned_import_kw.CopyFrom(pc.series(hub.planned_start, hub.settings.step_minutes, total))
            out.feeders.append(state)
        out.active_events.extend(pc.event_out(e) for e in hub.store.events(include_cancelled=False) if e.end > now)
        latest = hub.store.latest_report()
        if latest is not None:
            out.latest_solve.CopyFrom(pc.report_out(SolveReport.from_json(latest.payload)))
        return out

    @mapped_stream
    async def WatchPortfolio(
        self, request: portfolio_pb2.WatchPortfolioRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[portfolio_pb2.WatchPortfolioResponse]:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)  # a slow watcher gets the latest state, not a backlog
        self.hub.watchers.add(queue)
        try:
            while True:
                imp, exp, pv, ev = self._flows()
                latest = self.hub.store.latest_report()
                yield portfolio_pb2.WatchPortfolioResponse(
                    at=ts(self.hub.clock.now()),
                    import_kw=imp,
                    export_kw=exp,
                    pv_kw=pv,
                    ev_kw=ev,
                    latest_solve_id=latest.solve_id if latest else "",
                    sites=[
                        portfolio_pb2.SiteFlow(
                            site_id=s,
                            connected=s in self.hub.connections,
                            latest=self.hub.sites[s].latest if s in self.hub.sites else None,
                        )
                        for s in self._known()
                    ],
                )
                await queue.get()
        finally:
            self.hub.watchers.discard(queue)

    @mapped
    async def SetFeeder(
        self, request: portfolio_pb2.SetFeederRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.SetFeederResponse:
        feeder = pc.feeder_in(request.feeder)
        self.hub.store.put_feeder(feeder)
        self.hub.want_solve("feeder")
        return portfolio_pb2.SetFeederResponse(feeder=pc.feeder_out(feeder))

    @mapped
    async def ListFeeders(
        self, request: portfolio_pb2.ListFeedersRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListFeedersResponse:
        return portfolio_pb2.ListFeedersResponse(feeders=[pc.feeder_out(f) for f in self.hub.store.feeders()])

    @mapped
    async def DeleteFeeder(
        self, request: portfolio_pb2.DeleteFeederRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.DeleteFeederResponse:
        if not self.hub.store.delete_feeder(_id(request.feeder_id, "feeder_id")):
            raise NotFound(f"no feeder {request.feeder_id!r}")
        self.hub.want_solve("feeder")
        return portfolio_pb2.DeleteFeederResponse()

    @mapped
    async def CreateFlexEvent(
        self, request: portfolio_pb2.CreateFlexEventRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CreateFlexEventResponse:
        event = pc.event_in(request.event)
        if self.hub.store.event(event.event_id) is not None:
            raise InvalidInput.one("event.event_id", f"an event {event.event_id!r} exists already")
        if event.end <= self.hub.clock.now():
            raise InvalidInput.one("event.end", "is already past")
        self.hub.store.put_event(event)
        self.hub.want_solve("flex_event")
        return portfolio_pb2.CreateFlexEventResponse(event=pc.event_out(event))

    @mapped
    async def ListFlexEvents(
        self, request: portfolio_pb2.ListFlexEventsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListFlexEventsResponse:
        return portfolio_pb2.ListFlexEventsResponse(
            events=[pc.event_out(e) for e in self.hub.store.events(include_cancelled=request.include_cancelled)]
        )

    @mapped
    async def CancelFlexEvent(
        self, request: portfolio_pb2.CancelFlexEventRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CancelFlexEventResponse:
        event = self.hub.store.cancel_event(_id(request.event_id, "event_id"))
        self.hub.want_solve("flex_event")
        return portfolio_pb2.CancelFlexEventResponse(event=pc.event_out(event))

    @mapped
    async def Solve(
        self, request: portfolio_pb2.SolveRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.SolveResponse:
        return portfolio_pb2.SolveResponse(report=pc.report_out(await self.hub.solve("operator")))

    @mapped
    async def SetSiteSettings(
        self, request: portfolio_pb2.SetSiteSettingsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.SetSiteSettingsResponse:
        site_id = _id(request.site_id, "site_id")
        if site_id not in self._known():
            raise NotFound(f"no site {site_id!r}")
        settings = await self.hub.set_settings(site_id, pc.settings_in(request))
        return portfolio_pb2.SetSiteSettingsResponse(settings=pc.settings_out(settings))

    @mapped
    async def WhoAmI(
        self, request: portfolio_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.WhoAmIResponse:
        # the AuthInterceptor refused unknown tokens already; this reads the same table
        role = role_of(self.roles, context.invocation_metadata())
        if role is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required")
        return portfolio_pb2.WhoAmIResponse(role=str(role))

    @mapped
    async def GetSolveReport(
        self, request: portfolio_pb2.GetSolveReportRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetSolveReportResponse:
        record = self.hub.store.report(request.solve_id) if request.solve_id else self.hub.store.latest_report()
        if record is None:
            raise NotFound(f"no solve report {request.solve_id!r}" if request.solve_id else "no solve has run yet")
        return portfolio_pb2.GetSolveReportResponse(report=pc.report_out(SolveReport.from_json(record.payload)))
