"""One Ray instance per test session (each pytest-xdist worker is a session of its own).

One CPU each, so two xdist workers stay within a 2-core machine; RAY_ADDRESS, when set,
joins that cluster instead (`connect_ray`). Ray is started only by the tests that ask for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from portfolio.decomposition import DecompositionSolver, connect_ray


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    started_here = not ray.is_initialized()
    connect_ray(num_cpus=1)
    yield
    if started_here:
        ray.shutdown()


@pytest.fixture(scope="session")
def decomposition(ray_session: None) -> Iterator[DecompositionSolver]:
    """The session's decomposition solver: its worker (one Ray actor) serves every test."""
    solver = DecompositionSolver(gap=1e-3, time_limit_seconds=60, workers=1)
    yield solver
    solver.close()
