"""The dashboard in Debian's Chromium (driven by Playwright) against a portfolio and site
nodes on loopback, all on one simulated clock. Screenshots of each view go to
test-artifacts/dashboard/ so a reader can see what was checked."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio
from playwright.async_api import Page, async_playwright, expect
from portfolio_rig import SITES, make_node, make_rig_portfolio, until

from portfolio.store import IssuedSchedule
from services.dashboard.app import serve
from services.dashboard.client import PortfolioClient, PortfolioTarget
from services.stubs.gridmesh.v1 import portfolio_pb2
from sitenode.clock import SimulatedClock
from sitenode.model.run import Priorities
from sitenode.schedule import flex_column

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# as the machine's notes advise: no sandbox (root), and no calls home on a closed network
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START = datetime(2025, 6, 20, 10, 0, tzinfo=UTC)  # daytime: PV, load and batteries all move
SPEED = 60.0  # a simulated minute per second
T = TypeVar("T")
PEAK_WEIGHT = 2.0  # currency per kW of peak import
expect.set_options(timeout=20_000)  # a loaded CI machine: the page polls every few seconds


WEST_CAP_KW = 50.0


def scarce(doc: dict) -> None:
    """The warehouse cannot serve everyone under its 50 kW feeder: its miner wants a 40 kW
    floor and its battery a full charge by the horizon's end, so Module 11's priorities
    decide which gives way (the battery, while mining ranks below it)."""
    doc["site"]["flexible_loads"][0]["min_kw"] = 40
    doc["site"]["battery"]["soc_final_min_kwh"] = doc["site"]["battery"]["soc_max_kwh"]


def miner_kwh(issued: IssuedSchedule) -> float:
    """The miner's energy over a schedule the portfolio issued."""
    schedule = portfolio_pb2.SetpointSchedule.FromString(issued.payload).schedule
    column = next(c for c in schedule.columns if c.name == flex_column("miner-1"))
    return sum(column.values) * schedule.step_minutes / 60


class Stack:
    """Portfolio, three nodes and the dashboard in an event loop of their own thread, so the
    browser's driver and the nodes' solves do not wait on each other. The tests look at the
    stack's state through `call`, on the stack's loop (SQLite stores stay in their thread)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="dashboard-stack", daemon=True)
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.failed = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        clock = SimulatedClock(START, SPEED)
        self.pf = make_rig_portfolio(
            self.folder,
            {
                "feeders": [
                    {
                        "feeder_id": "north",
                        "site_ids": ["depot-north", "office-east"],
                        "cap_kw": 150.0,
                        "description": "shared transformer",
                    },
                    {
                        "feeder_id": "west",
                        "site_ids": ["warehouse-west"],
                        "cap_kw": WEST_CAP_KW,
                        "description": "a weak line",
                    },
                ],
                "portfolio": {"ping_interval_seconds": 0.5, "ping_timeout_seconds": 15.0},
            },
            clock=clock,
        )
        # heartbeats get room: two cores run this, the browser and the rest of the suite
        link = {"ping_interval_seconds": 0.5, "ping_timeout_seconds": 15.0}
        self.nodes = {
            name: make_node(
                name, self.folder, self.pf.address, clock=clock, edit=scarce if name == "warehouse" else None, **link
            )
            for name in SITES
        }
        await self.pf.begin()
        for n in self.nodes.values():
            n.start()
        serving = await serve(PortfolioClient(PortfolioTarget(self.pf.address)), "127.0.0.1", 0)
        self.url = serving.url
        try:
            await until(lambda: all(self._acked(s) for s in SITES.values()), 90)
            self.ready.set()
            await self._stop.wait()
        finally:
            await serving.runner.cleanup()
            for n in self.nodes.values():
                await n.halt()
            await self.pf.end()

    def _acked(self, site_id: str) -> bool:
        issued = self.pf.hub.store.schedules(site_id, 1)
        return bool(issued) and str(issued[0].state) == "ACKED"

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(180)
        if self.failed is not None or not self.ready.is_set():
            raise RuntimeError("the stack did not come up") from self.failed

    def close(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)

    async def call(self, fn: Callable[[], T]) -> T:
        """`fn()` run on the stack's loop."""
        assert self.loop is not None

        async def run() -> T:
            return fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))

    async def until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not await self.call(predicate):
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.2)


async def signed_in(page: Page, url: str, token: str) -> None:
    await page.goto(url)
    await page.get_by_test_id("token").fill(token)
    await page.get_by_test_id("sign-in").click()
    await expect(page.get_by_test_id("role")).to_have_text("operator" if token == "op" else "viewer")


# one stack and one browser for the module: starting them is most of the cost
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("dashboard"))
    running.start()
    yield running
    running.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_the_portfolio_view_shows_every_site_live(stack, browser):
    page = await browser.new_page(viewport={"width": 1400, "height": 1100})
    await page.goto(stack.url)
    # a wrong token is refused at its field, and nothing is shown
    await page.get_by_test_id("token").fill("not-a-token")
    await page.get_by_test_id("sign-in").click()
    await expect(page.locator('.field-error[data-field="token"]')).to_contain_text("not a token")
    await expect(page.locator("#portfolio-view")).to_be_hidden()
    await signed_in(page, stack.url, "op")
    for site_id in SITES.values():
        card = page.get_by_test_id(f"card-{site_id}")
        await expect(card).to_be_visible()
        await expect(card.locator("[data-k=mode]")).to_have_text("portfolio")
    await expect(page.get_by_test_id("feeder-north")).to_contain_text("depot-north, office-east")
    await expect(page.get_by_test_id("solve")).to_contain_text("every cap and event holds")
    # the numbers move with the simulated clock: the office's import and PV, the clock itself
    office = page.get_by_test_id("card-office-east")
    first_clock = await page.get_by_test_id("clock").text_content()
    first = await office.locator("dl").inner_text()
    await expect(page.get_by_test_id("clock")).not_to_have_text(first_clock or "", timeout=15_000)
    await expect(office.locator("dl")).not_to_have_text(first, timeout=30_000)
    await expect(page.get_by_test_id("total-import")).to_contain_text("kW")
    # today's account is priced from stored telemetry: a cost appears once a step has ended
    await expect(page.get_by_test_id("cost-today")).not_to_have_text(re.compile(r"^0\.00\b"))
    await page.screenshot(path=str(SHOTS / "portfolio.png"), full_page=True)


async def test_a_viewer_sees_everything_and_can_change_nothing(stack, browser):
    page = await browser.new_page(viewport={"width": 1400, "height": 1100})
    await signed_in(page, stack.url, "view")
    await expect(page.get_by_test_id("card-depot-north")).to_be_visible()
    await expect(page.get_by_test_id("event-form")).to_be_hidden()
    await expect(page.get_by_test_id("feeder-form-north")).to_be_hidden()
    await page.screenshot(path=str(SHOTS / "portfolio-viewer.png"), full_page=True)
    await page.get_by_test_id("card-office-east").click()
    await expect(page.get_by_test_id("readonly-note")).to_be_visible()
    await expect(page.get_by_test_id("priority-fleet")).to_be_disabled()
    await expect(page.get_by_test_id("save-settings")).to_be_disabled()
    # and the server refuses a viewer's change even when the page is bypassed
    status = await page.evaluate("""async () => (await fetch('/api/sites/office-east/settings', {method: 'PUT',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({priorities: {fleet: 1, facility: 2, battery: 3, mining: 4, export: 5}})})).status""")
    assert status == 403
    assert await stack.call(lambda: stack.pf.hub.store.settings("office-east")) is None
    await page.screenshot(path=str(SHOTS / "site-viewer.png"), full_page=True)


async def test_a_priority_change_in_the_page_reaches_the_node_and_its_next_schedule(stack, browser):
    page = await browser.new_page(viewport={"width": 1400, "height": 1200})
    await signed_in(page, stack.url, "op")
    await page.get_by_test_id("card-warehouse-west").click()
    await expect(page.get_by_test_id("site-title")).to_have_text("warehouse-west")
    await expect(page.get_by_test_id("value-solar")).to_contain_text("kW")
    await expect(page.get_by_test_id("schedule-legend")).to_contain_text("version")
    await expect(page.get_by_test_id("priority-fleet")).to_have_value("1")
    await page.screenshot(path=str(SHOTS / "site.png"), full_page=True)

    node = stack.nodes["warehouse"]
    hub = stack.pf.hub
    first = await stack.call(lambda: hub.store.schedules("warehouse-west", 1)[0])
    issued, before = first.version, miner_kwh(first)
    # a bad value: its field says why, and nothing changes anywhere
    await page.get_by_test_id("priority-fleet").fill("9")
    await page.get_by_test_id("weight-carbon").fill("lots")
    await page.get_by_test_id("save-settings").click()
    await expect(page.get_by_test_id("error-weights.carbon")).to_contain_text("must be a number")
    await page.get_by_test_id("weight-carbon").fill("0")
    await page.get_by_test_id("save-settings").click()
    await expect(page.get_by_test_id("error-priorities.fleet")).to_contain_text("priorities.fleet")
    await page.screenshot(path=str(SHOTS / "site-field-error.png"), full_page=True)
    assert await stack.call(lambda: hub.store.settings("warehouse-west")) is None
    assert await stack.call(lambda: node.runtime.settings.priorities) == Priorities()

    # a good one: stored, passed to the node over its stream, planned with next
    await page.get_by_test_id("priority-fleet").fill("2")
    await page.get_by_test_id("priority-mining").fill("1")
    await page.get_by_test_id("weight-peak").fill(str(PEAK_WEIGHT))
    await page.get_by_test_id("save-settings").click()
    await expect(page.get_by_test_id("settings-ok")).to_contain_text("saved")
    wanted = Priorities(fleet=2, facility=2, battery=3, mining=1, export=5)
    await stack.until(
        lambda: node.runtime.settings.priorities == wanted and node.runtime.settings.objective.peak == PEAK_WEIGHT, 20
    )
    await stack.until(
        lambda: (
            hub.sites["warehouse-west"].snapshot is not None
            and hub.sites["warehouse-west"].snapshot.run.priorities == wanted
        ),
        30,
    )
    # and the portfolio plans the site again from that snapshot, and the node takes the plan:
    # mining now ranks first, so the miner keeps its floor and the battery's target gives way
    received = await stack.call(lambda: stack.pf.hub.clock.now())
    await stack.until(
        lambda: (lambda r: r.version != issued and r.issued_at >= received and str(r.state) == "ACKED")(
            hub.store.schedules("warehouse-west", 1)[0]
        ),
        90,
    )
    after = miner_kwh(await stack.call(lambda: hub.store.schedules("warehouse-west", 1)[0]))
    assert after > before * 1.15, (before, after)
    await expect(page.get_by_test_id("settings-source")).to_contain_text("set by an operator")
    await page.screenshot(path=str(SHOTS / "site-saved.png"), full_page=True)
