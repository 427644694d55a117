"""Schedules encoded where they are planned: a site's body joined to the solve's shared part
parses as the message built field by field, and the decomposition's workers, given the
encoder, hand each site's body back with its plan."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from factories.problems import START, make_problem

from portfolio.decomposition import DecompositionSolver
from portfolio.model import Feeder
from services import portfolio_convert as pc
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2


def test_a_body_joined_to_the_shared_part_parses_as_the_whole_message():
    start, until = START, START + timedelta(hours=2)
    values = np.array([[1.5, 0.0], [2.25, 0.5], [0.0, 3.0]])
    limit = np.array([10.0, np.inf, 4.0])
    encoder = pc.SetpointEncoder("pf-1", start, 15, until)
    message, payload = encoder.from_body(
        pc.schedule_body(["grid_import_kw", "ev_van-1_kw"], values, {"van-1": "ac-01"}), limit
    )
    begins, ends = pc.ts(start), pc.ts(until)
    expected = portfolio_pb2.SetpointSchedule(
        schedule=common_pb2.Schedule(
            version="pf-1",
            source="portfolio",
            start=begins,
            step_minutes=15,
            valid_from=begins,
            valid_until=ends,
            columns=[
                common_pb2.ScheduleColumn(name="grid_import_kw", values=[1.5, 2.25, 0.0]),
                common_pb2.ScheduleColumn(name="ev_van-1_kw", values=[0.0, 0.5, 3.0]),
            ],
            charger_assignment={"van-1": "ac-01"},
        ),
        import_limit_kw=common_pb2.TimeSeries(start=begins, step_minutes=15, values=[10.0, 1e9, 4.0]),
    )
    assert message.schedule == expected and portfolio_pb2.SetpointSchedule.FromString(payload) == expected
    assert encoder.message(
        ["grid_import_kw", "ev_van-1_kw"], values, {"van-1": "ac-01"}, limit
    ) == portfolio_pb2.PortfolioMessage(schedule=expected)


def test_the_decomposition_workers_encode_each_site_with_its_plan():
    steps = 6
    chargers = [{"id": "ac-01", "max_kw": 11, "kind": "ac"}, {"id": "ac-02", "max_kw": 11, "kind": "ac"}]
    problems = {
        "depot": make_problem(
            {"grid": {"import_limit_kw": 60}, "chargers": chargers},
            [5.0] * steps,
            prices=[0.3, 0.1, 0.1, 0.3, 0.3, 0.1],
            sessions=[{"session_id": "van-1", "arrival": 0, "departure": steps, "energy_kwh": 20.0, "max_kw": 11.0}],
        ),
        "office": make_problem(
            {"grid": {"import_limit_kw": 60}}, [12.0, 14.0, 16.0, 16.0, 14.0, 12.0], prices=[0.2] * steps
        ),
    }
    feeders = [Feeder(feeder_id="f", site_ids=["depot", "office"], cap_kw=25.0)]
    solver = DecompositionSolver(use_ray=False, encode=pc.schedule_body)
    try:
        plan = solver.solve(problems, feeders, [])
    finally:
        solver.close()
    assert set(plan.sites) == {"depot", "office"}
    for part in plan.sites.values():
        assert part.encoded is not None
        body = portfolio_pb2.SetpointSchedule.FromString(part.encoded).schedule
        frame = part.plan.schedule
        assert [c.name for c in body.columns] == frame.columns.tolist()
        assert np.allclose(np.array([list(c.values) for c in body.columns]).T, frame.to_numpy(dtype=float))
        assert dict(body.charger_assignment) == part.plan.charger_assignment
    assert plan.sites["depot"].plan.charger_assignment  # the van has its charger, and it travels in the body
