# syntax=docker/dockerfile:1
# One image for every gridmesh process:
#   docker run IMAGE portfolio serve --config /etc/gridmesh/portfolio.yaml --listen 0.0.0.0:50070
#   docker run IMAGE sitenode serve --config /etc/gridmesh/node.yaml --listen 127.0.0.1:50051 --insecure-loopback
# and, under KubeRay, `ray start` on the Ray head and workers (KubeRay replaces the command).
# Build from the repository root:  docker build -t gridmesh:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a venv with the locked dependencies (requirements/image.txt: the versions the tests
# ran, with hashes; all binary wheels), then the gridmesh wheel built and installed without deps.
# ray[default] (the dashboard agent) is in the lock, so the same image runs a KubeRay head or
# worker: KubeRay's probes and the chart's call the agent's /api/healthz.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/image.txt ./requirements/image.txt
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary :all: -r requirements/image.txt
COPY pyproject.toml README.md ./
COPY sitenode ./sitenode
COPY portfolio ./portfolio
COPY services ./services
RUN /opt/venv/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/gridmesh-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/gridmesh --help > /dev/null

# ---- runtime: the venv only, as a non-root user
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 gridmesh \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/gridmesh --create-home --shell /usr/sbin/nologin gridmesh
COPY --from=build /opt/venv /opt/venv
# KubeRay starts Ray through `bash -lc`, whose /etc/profile resets PATH: put the entry points
# where a login shell finds them
RUN ln -s /opt/venv/bin/gridmesh /opt/venv/bin/ray /usr/local/bin/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRIDMESH_HEALTH_ADDRESS=127.0.0.1:50070
USER 10001:10001
WORKDIR /home/gridmesh
EXPOSE 50070

# grpc.health.v1 Check("") over plaintext against $GRIDMESH_HEALTH_ADDRESS (default the portfolio,
# 127.0.0.1:50070). It works wherever the app speaks plaintext, which is loopback only:
#   - portfolio with --insecure-loopback: as is;
#   - site node (its API on 127.0.0.1:50051 with --insecure-loopback): -e GRIDMESH_HEALTH_ADDRESS=127.0.0.1:50051;
#   - portfolio with TLS: the port requires a client certificate, so this check fails: run with
#     --no-healthcheck (or a --health-cmd with an operator certificate).
# Kubernetes ignores HEALTHCHECK; the Helm chart runs the same code as an exec probe where it
# applies (tests/helm/test_chart.py keeps the two identical).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as s; a = os.environ.get('GRIDMESH_HEALTH_ADDRESS', '127.0.0.1:50070'); r = s.HealthStub(grpc.insecure_channel(a)).Check(h.HealthCheckRequest(), timeout=3); sys.exit(r.status != h.HealthCheckResponse.SERVING)"]

# Exec form: gridmesh is PID 1 and gets the stop signal itself (docker stop, Kubernetes); it stops
# within 10 s (streams closed with a status, store or journal closed) and exits 0. The Helm chart
# gives its pods terminationGracePeriodSeconds above that; with plain Docker, `docker stop -t 15`
# leaves room for a local Ray to shut down too.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gridmesh"]
CMD ["--help"]
