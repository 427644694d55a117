"""The dashboard's one channel to the portfolio's operator API.

Every call carries the browser user's own bearer token: the portfolio decides what a
viewer or an operator may do, the dashboard holds no rights of its own. Its certificate
(mTLS) only proves it is a client the portfolio's CA issued.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.certs import channel_credentials
from services.server import KEEPALIVE
from services.stubs.gridmesh.v1 import portfolio_pb2, portfolio_pb2_grpc

CALL_TIMEOUT = 10.0


@dataclass(frozen=True)
class PortfolioTarget:
    address: str
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def channel(self) -> grpc.aio.Channel:
        if self.ca is None:
            return grpc.aio.insecure_channel(self.address, options=KEEPALIVE)
        return grpc.aio.secure_channel(
            self.address, channel_credentials(self.ca, self.cert, self.key), options=KEEPALIVE
        )


class PortfolioClient:
    def __init__(self, target: PortfolioTarget) -> None:
        self.target = target
        self._channel: grpc.aio.Channel | None = None
        self._stub: portfolio_pb2_grpc.PortfolioStub | None = None

    @property
    def stub(self) -> portfolio_pb2_grpc.PortfolioStub:
        if self._stub is None:
            self._channel = self.target.channel()
            self._stub = portfolio_pb2_grpc.PortfolioStub(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel, self._stub = None, None

    @staticmethod
    def _meta(token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)

    async def role(self, token: str) -> str:
        return (
            await self.stub.WhoAmI(portfolio_pb2.WhoAmIRequest(), metadata=self._meta(token), timeout=CALL_TIMEOUT)
        ).role

    async def portfolio(
        self, token: str
    ) -> tuple[
        portfolio_pb2.ListSitesResponse, portfolio_pb2.GetPortfolioStateResponse, portfolio_pb2.ListFlexEventsResponse
    ]:
        meta = self._meta(token)
        sites, state, events = await asyncio.gather(
            self.stub.ListSites(portfolio_pb2.ListSitesRequest(), metadata=meta, timeout=CALL_TIMEOUT),
            self.stub.GetPortfolioState(portfolio_pb2.GetPortfolioStateRequest(), metadata=meta, timeout=CALL_TIMEOUT),
            self.stub.ListFlexEvents(portfolio_pb2.ListFlexEventsRequest(), metadata=meta, timeout=CALL_TIMEOUT),
        )
        return sites, state, events

    async def site(self, token: str, site_id: str) -> portfolio_pb2.GetSiteResponse:
        return await self.stub.GetSite(
            portfolio_pb2.GetSiteRequest(site_id=site_id), metadata=self._meta(token), timeout=CALL_TIMEOUT
        )

    async def set_settings(
        self, token: str, request: portfolio_pb2.SetSiteSettingsRequest
    ) -> portfolio_pb2.SetSiteSettingsResponse:
        return await self.stub.SetSiteSettings(request, metadata=self._meta(token), timeout=CALL_TIMEOUT)

    async def set_feeder(self, token: str, feeder: portfolio_pb2.Feeder) -> portfolio_pb2.SetFeederResponse:
        return await self.stub.SetFeeder(
            portfolio_pb2.SetFeederRequest(feeder=feeder), metadata=self._meta(token), timeout=CALL_TIMEOUT
        )

    async def create_event(self, token: str, event: portfolio_pb2.FlexEvent) -> portfolio_pb2.CreateFlexEventResponse:
        return await self.stub.CreateFlexEvent(
            portfolio_pb2.CreateFlexEventRequest(event=event), metadata=self._meta(token), timeout=CALL_TIMEOUT
        )

    async def cancel_event(self, token: str, event_id: str) -> portfolio_pb2.CancelFlexEventResponse:
        return await self.stub.CancelFlexEvent(
            portfolio_pb2.CancelFlexEventRequest(event_id=event_id), metadata=self._meta(token), timeout=CALL_TIMEOUT
        )

    def watch(
        self, token: str
    ) -> grpc.aio.UnaryStreamCall[portfolio_pb2.WatchPortfolioRequest, portfolio_pb2.WatchPortfolioResponse]:
        """The WatchPortfolio stream: iterate it for the updates, `cancel()` it when done."""
        return self.stub.WatchPortfolio(portfolio_pb2.WatchPortfolioRequest(), metadata=self._meta(token))
