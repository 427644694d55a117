"""The Helm chart (helm/gridmesh), with Helm v4's own Go SDK (helm-python-sdk): no helm binary,
no cluster. Lint, render, validate every manifest against the Kubernetes schemas, parse the
rendered portfolio.yaml and node.yaml with the app's models, and hold values.schema.json to
the values and to the config models."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from portfolio.config import PortfolioConfig, PortfolioSettings
from portfolio.solvers import SolverConfig
from sitenode import node_config as nc
from sitenode.model.site import SiteConfig
from sitenode.model.validation import parse

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gridmesh"
VALUES_ALL = yaml.safe_load((CHART / "values-all.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
RELEASE, NAMESPACE = "vpp", "energy"

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest that
# kubernetes-validate ships schemas for.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
# Custom resources: kubernetes-validate holds the core API's schemas only, so these are
# checked structurally below (apiVersion, kind, metadata.name, spec) and by their own tests.
CUSTOM_RESOURCES = {
    ("ray.io/v1", "RayCluster"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

# keys of the app's configs that the chart sets itself (not in values)
CHART_OWNED_PORTFOLIO = {"listen", "store", "tls", "tokens", "metrics_listen"}
CHART_OWNED_NODE = {"listen", "journal"}
CHART_OWNED_LINK = {"address", "ca", "cert", "key", "insecure_loopback"}
CHART_OWNED_SOLVER = {"ray_address"}  # RAY_ADDRESS in the environment instead


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


@pytest.fixture(scope="module")
def defaults(chart) -> list[dict[str, Any]]:
    return render(chart, None)


@pytest.fixture(scope="module")
def everything(chart) -> list[dict[str, Any]]:
    return render(chart, VALUES_ALL)


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind} *{name_suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def with_values(**changes: Any) -> dict[str, Any]:
    """values-all with some values replaced; a key path is spelt with `__` (portfolio__tls__key, sites__0__name)."""
    values = copy.deepcopy(VALUES_ALL)
    for dotted, value in changes.items():
        node = values
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return values


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment"):
            specs.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "RayCluster":
            specs.append((d["metadata"]["name"] + "/head", d["spec"]["headGroupSpec"]["template"]["spec"]))
            specs += [
                (f"{d['metadata']['name']}/{g['groupName']}", g["template"]["spec"])
                for g in d["spec"]["workerGroupSpecs"]
            ]
    return specs


# ---- 1. lint


@pytest.mark.parametrize("values", [None, VALUES_ALL], ids=["defaults", "values-all"])
def test_lint_is_clean(values):
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSIONS[-1]}")
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # severity 2 = warning, 3 = error; INFO ("icon is recommended") is fine
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# ---- 2. every manifest against the Kubernetes schemas


@pytest.mark.parametrize("which", ["defaults", "everything"])
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_manifests_validate_against_kubernetes(which, kube_version, request):
    docs = request.getfixturevalue(which)
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            assert isinstance(doc["metadata"]["name"], str) and doc["metadata"]["name"]
            assert isinstance(doc["spec"], dict) and doc["spec"]
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {path}: {exc.message}")


def test_kubernetes_validation_is_not_a_no_op(defaults):
    """The strict schemas catch a misspelt field and a wrong type (else the test above proves nothing)."""
    sts = copy.deepcopy(one(defaults, "StatefulSet"))
    sts["spec"]["replica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(sts, KUBE_VERSIONS[-1], strict=True)
    sts = copy.deepcopy(one(defaults, "StatefulSet"))
    sts["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = "10001"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBE_VERSIONS[-1], strict=True)


def test_names_fit_kubernetes_limits(everything):
    for doc in everything:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]["name"]


def test_custom_resources_have_their_shape(everything):
    ray = one(everything, "RayCluster")
    head = ray["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["client"] == 10001 and ports["gcs-server"] == 6379
    assert all(
        isinstance(v, str) for g in [head, *ray["spec"]["workerGroupSpecs"]] for v in g["rayStartParams"].values()
    )
    for group in ray["spec"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    monitor = one(everything, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(everything, "Service", "-all")
    assert {
        "name": "metrics",
        "port": 9090,
        "targetPort": "metrics",
        "protocol": "TCP",
        "appProtocol": "http",
    } in service["spec"]["ports"]
    # the ServiceMonitor selects the Services of the portfolio; only the main one has a metrics port
    selected = [
        d
        for d in everything
        if d["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected if any(p["name"] == "metrics" for p in s["spec"]["ports"])] == [
        "gridmesh-all"
    ]


# ---- 3. what each values file renders


def test_defaults_render_the_portfolio_only(defaults):
    assert kinds(defaults) == {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "Secret", "ServiceAccount"}
    sts = one(defaults, "StatefulSet", "-portfolio")
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "portfolio",
        "serve",
        "--config",
        "/etc/gridmesh/portfolio.yaml",
        "--listen",
        "0.0.0.0:50070",
    ]
    assert {"name": "grpc", "containerPort": 50070, "protocol": "TCP"} in container["ports"]
    assert "RAY_ADDRESS" not in {e["name"] for e in container["env"]}
    service = one(defaults, "Service", "gridmesh")
    assert service["spec"]["type"] == "ClusterIP"
    assert [p["name"] for p in service["spec"]["ports"]] == ["grpc"]
    assert one(defaults, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # the token Secret only: TLS comes from a Secret the operator creates (<fullname>-tls)
    assert [s["metadata"]["name"] for s in defaults if s["kind"] == "Secret"] == ["vpp-gridmesh-tokens"]
    tls = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "vpp-gridmesh-tls"


def test_values_all_renders_every_component(everything):
    assert kinds(everything) == {
        "StatefulSet",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "Secret",
        "ServiceAccount",
        "Deployment",
        "RayCluster",
        "ServiceMonitor",
        "PrometheusRule",
    }
    assert sorted(d["metadata"]["name"] for d in everything if d["kind"] == "Deployment") == [
        "gridmesh-all-node-office",
        "gridmesh-all-node-warehouse",
    ]
    # inline PEMs become Secrets; the warehouse's existing Secret is only referenced
    assert sorted(d["metadata"]["name"] for d in everything if d["kind"] == "Secret") == [
        "gridmesh-all-node-office-tls",
        "gridmesh-all-tls",
        "gridmesh-all-tokens",
    ]
    warehouse = one(everything, "Deployment", "-warehouse")["spec"]["template"]["spec"]
    assert next(v for v in warehouse["volumes"] if v["name"] == "tls")["secret"]["secretName"] == "warehouse-node-tls"
    env = {e["name"]: e for e in one(everything, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]}
    # KubeRay names the head Service <cluster>-head-svc; Ray Client listens on 10001
    assert (
        env["RAY_ADDRESS"]["value"]
        == f"ray://{one(everything, 'RayCluster')['metadata']['name']}-head-svc.{NAMESPACE}.svc:10001"
    )
    assert one(everything, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 0


def test_tokens_are_inline_or_from_an_existing_secret(chart):
    docs = render(
        chart,
        with_values(
            portfolio__tokens={"existingSecret": "ops-tokens", "operator": "", "viewer": ""},
            portfolio__tls={"enabled": True, "existingSecret": "portfolio-tls", "cert": "", "key": "", "clientCa": ""},
        ),
    )
    secrets = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Secret")
    assert secrets == ["gridmesh-all-node-office-tls"]
    spec = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in spec["containers"][0]["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {"ops-tokens"}
    assert next(v for v in spec["volumes"] if v["name"] == "tls")["secret"]["secretName"] == "portfolio-tls"
    inline = one(render(chart, VALUES_ALL), "Secret", "-tokens")["data"]
    assert inline == {
        "operator-token": "b3BlcmF0b3ItdG9rZW4tZm9yLXRlc3Rz",
        "viewer-token": "dmlld2VyLXRva2VuLWZvci10ZXN0cw==",
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"portfolio__tls__key": ""}, "portfolio.tls: give all of cert, key, clientCa inline, or none"),
        ({"portfolio__tls__existingSecret": "x"}, "portfolio.tls: give existingSecret or the inline PEMs, not both"),
        (
            {"siteNodes__sites__0__tls__ca": ""},
            "siteNodes.sites[office].tls: give all of cert, key, ca inline, or none",
        ),
        ({"metrics__enabled": False}, "metrics.serviceMonitor.enabled needs metrics.enabled"),
        ({"portfolio__tls__enabled": False}, "siteNodes.enabled needs portfolio.tls.enabled"),
        ({"siteNodes__sites__1__name": "office"}, 'the name "office" is used twice'),
    ],
)
def test_inconsistent_values_fail_with_a_message(chart, changes, message):
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chart.render(with_values(**changes), name=RELEASE, namespace=NAMESPACE)


# ---- 4. the rendered configs parse with the app's own models


def config_text(docs: list[dict[str, Any]], name_suffix: str, key: str) -> str:
    return one(docs, "ConfigMap", name_suffix)["data"][key]


@pytest.mark.parametrize("which", ["defaults", "everything"])
def test_portfolio_yaml_parses_with_portfolio_config(which, request):
    docs = request.getfixturevalue(which)
    config = parse(PortfolioConfig, yaml.safe_load(config_text(docs, "-portfolio", "portfolio.yaml")))
    s = config.portfolio
    assert s.store == "/var/lib/gridmesh/portfolio.db"
    assert s.tls is not None and s.tls.client_ca == "/etc/gridmesh/tls/ca.crt"
    assert [(t.token_env, t.role) for t in s.tokens] == [
        ("GRIDMESH_OPERATOR_TOKEN", "operator"),
        ("GRIDMESH_VIEWER_TOKEN", "viewer"),
    ]
    sts = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in sts["containers"][0]["volumeMounts"]}
    assert mounts["store"] == str(Path(s.store).parent) and mounts["tls"] == str(Path(s.tls.cert).parent)
    if which == "everything":
        assert s.metrics_listen == "0.0.0.0:9090"
        assert s.clock_start is not None and s.clock_start.utcoffset() is not None
        assert s.clock_origin_unix == 1767225600 and s.solve_period_seconds == 60
        assert [f.feeder_id for f in config.feeders] == ["north", "evening"]
        assert config.feeders[1].caps_kw == [200, 200, 180, 150]
        assert (config.solver.workers, config.solver.runtime_env) == (4, {"env_vars": {"OMP_NUM_THREADS": "1"}})
    else:
        assert s.metrics_listen is None and config.feeders == []
        assert config.solver == SolverConfig(method="auto")
    assert config.solver.ray_address is None  # the chart passes RAY_ADDRESS instead


def test_node_yaml_parses_with_node_config(everything):
    for site in VALUES_ALL["siteNodes"]["sites"]:
        name = f"-node-{site['name']}"
        config = parse(nc.NodeConfig, yaml.safe_load(config_text(everything, name, "node.yaml")))
        assert config.site.site_id == site["config"]["site"]["site_id"]
        assert config.node.listen == "127.0.0.1:50051" and config.node.journal == "/var/lib/gridmesh/journal.db"
        link = config.portfolio
        assert link is not None and not link.insecure_loopback
        assert link.address == f"gridmesh-all.{NAMESPACE}.svc:50070"
        assert (link.ca, link.cert, link.key) == (
            "/etc/gridmesh/tls/ca.crt",
            "/etc/gridmesh/tls/tls.crt",
            "/etc/gridmesh/tls/tls.key",
        )
        container = one(everything, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [
            "sitenode",
            "serve",
            "--config",
            "/etc/gridmesh/node.yaml",
            "--listen",
            "127.0.0.1:50051",
            "--insecure-loopback",
        ]
    # times past 10:00 stay strings (YAML 1.1 would read an unquoted 16:00 as the number 960)
    office = parse(nc.NodeConfig, yaml.safe_load(config_text(everything, "-node-office", "node.yaml")))
    assert office.plan.tariff.energy_rates[2].schedule.start_time == "16:00"


# ---- 5. values.schema.json


@pytest.mark.parametrize(
    ("values", "where", "what"),
    [
        ({"portfolio": {"replicas": "1"}}, "/portfolio/replicas", "got string, want integer"),
        ({"portfolio": {"replicas": 2}}, "/portfolio/replicas", "maximum"),
        ({"portfolio": {"replica": 1}}, "/portfolio", "additional properties 'replica' not allowed"),
        (
            {"portfolio": {"settings": {"listen": "0.0.0.0:1"}}},
            "/portfolio/settings",
            "additional properties 'listen' not allowed",
        ),
        ({"portfolio": {"settings": {"step_minutes": 90}}}, "/portfolio/settings/step_minutes", "maximum"),
        ({"portfolio": {"tls": {"cert": "certs/portfolio.pem"}}}, "/portfolio/tls/cert", "does not match pattern"),
        ({"portfolio": {"feeders": [{"feeder_id": "n", "site_ids": ["a"]}]}}, "/portfolio/feeders/0", "oneOf"),
        (
            {"image": {"pullPolicy": "Sometimes"}},
            "/image/pullPolicy",
            "value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            {
                "siteNodes": {
                    "sites": [{"name": "a", "config": {"site": {"site_id": "a"}, "node": {"listen": "0.0.0.0:1"}}}]
                }
            },
            "/siteNodes/sites/0/config/node",
            "additional properties 'listen' not allowed",
        ),
    ],
)
def test_schema_rejects_bad_values(chart, values, where, what):
    with pytest.raises(helm.HelmValuesError) as exc:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert f"at '{where}'" in str(exc.value) and what in str(exc.value), str(exc.value)
    report = helm.lint(CHART, values)
    assert any(where in e for e in report["errors"]), report["errors"]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMA["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    if "anyOf" in schema:  # nullable: the non-null branch
        schema = resolve(next(s for s in schema["anyOf"] if s.get("type") != "null"))
    return schema


def walk(value: Any, schema: dict[str, Any], path: str, open_objects: list[str]) -> None:
    schema = resolve(schema)
    if isinstance(value, dict):
        assert schema.get("type") == "object", f"{path}: {schema.get('type')}"
        props, extra = schema.get("properties"), schema.get("additionalProperties", True)
        if props is None and extra is True:
            # passed through to Kubernetes or checked by the app's models: the schema says which
            assert schema.get("description"), f"{path}: a free-form object needs a description saying who validates it"
            open_objects.append(path)
            return
        for key, item in value.items():
            if props and key in props:
                walk(item, props[key], f"{path}.{key}", open_objects)
            else:
                assert isinstance(extra, dict), f"{path}.{key} is not in values.schema.json"
                walk(item, extra, f"{path}.{key}", open_objects)
    elif isinstance(value, list):
        assert schema.get("type") == "array", f"{path}: {schema.get('type')}"
        for i, item in enumerate(value):
            walk(item, schema["items"], f"{path}[{i}]", open_objects)


def test_schema_covers_every_value():
    defaults_file = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults_file) == set(SCHEMA["properties"]) - {"global"}
    for values in (defaults_file, VALUES_ALL):
        open_objects: list[str] = []
        walk(values, SCHEMA, "", open_objects)
    # every key of values.yaml is also set in values-all.yaml
    assert keys(defaults_file) <= keys(VALUES_ALL), keys(defaults_file) - keys(VALUES_ALL)


def keys(values: Any, path: str = "") -> set[str]:
    if not isinstance(values, dict):
        return set()
    return {p for k, v in values.items() for p in {f"{path}.{k}", *keys(v, f"{path}.{k}")}}


def test_schema_follows_the_config_models():
    """A setting added to the app's configs must be added to the chart (or declared the chart's)."""
    props = SCHEMA["properties"]
    portfolio = props["portfolio"]["properties"]
    assert set(portfolio["settings"]["properties"]) == set(PortfolioSettings.model_fields) - CHART_OWNED_PORTFOLIO
    assert set(portfolio["solver"]["properties"]) == set(SolverConfig.model_fields) - CHART_OWNED_SOLVER
    # portfolio.yaml's top-level keys: settings, feeders and solver each come from values
    assert set(PortfolioConfig.model_fields) == {"portfolio", "feeders", "solver"}
    node = props["siteNodes"]["properties"]["sites"]["items"]["properties"]["config"]["properties"]
    assert set(node) == set(nc.NodeConfig.model_fields)
    assert set(node["site"]["properties"]) == set(SiteConfig.model_fields)
    assert set(node["plan"]["properties"]) == set(nc.PlanConfig.model_fields)
    assert set(node["devices"]["properties"]) == set(nc.DevicesConfig.model_fields)
    assert set(node["node"]["properties"]) == set(nc.ServeConfig.model_fields) - CHART_OWNED_NODE
    assert set(node["portfolio"]["properties"]) == set(nc.PortfolioLinkConfig.model_fields) - CHART_OWNED_LINK


# ---- 6. security and probes


@pytest.mark.parametrize("which", ["defaults", "everything"])
def test_every_container_is_locked_down(which, request):
    specs = pod_specs(request.getfixturevalue(which))
    assert specs
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec.get("initContainers", []) + spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001, name
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False and ctx["privileged"] is False, name
            assert ctx["capabilities"] == {"drop": ["ALL"]}, name
            # a read-only root needs a writable /tmp (HOME points there)
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in volumes[tmp["name"]], name
            assert {"name": "HOME", "value": "/tmp"} in container["env"], name
            assert container["resources"].get("requests"), name


GRIDMESH_STOP_SECONDS = 10  # every gridmesh service ends within this on SIGTERM (tests/services/test_shutdown.py)


@pytest.mark.parametrize("which", ["defaults", "everything"])
def test_gridmesh_pods_get_the_time_they_take_to_stop(which, request):
    # the container's PID 1 is gridmesh itself (the image's exec-form ENTRYPOINT), which handles SIGTERM
    specs = [(n, s) for n, s in pod_specs(request.getfixturevalue(which)) if "ray" not in n.split("/")[0]]
    assert specs
    for name, spec in specs:
        assert spec["terminationGracePeriodSeconds"] > GRIDMESH_STOP_SECONDS, name
    assert '\nENTRYPOINT ["gridmesh"]' in (ROOT / "Dockerfile").read_text()
    bad = with_values(siteNodes__terminationGracePeriodSeconds=5)
    with pytest.raises(Exception, match="terminationGracePeriodSeconds"):
        render(request.getfixturevalue("chart"), bad)


def dockerfile_healthcheck() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK "))
    return json.loads(line.split(" CMD ", 1)[1])


def test_probes_follow_the_tls_mode(chart, defaults, everything):
    for docs in (defaults, everything):
        container = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
        for kind in ("livenessProbe", "readinessProbe"):
            assert container[kind]["tcpSocket"] == {"port": "grpc"}  # mTLS: kubelet has no client certificate
    loopback = render(chart, {"portfolio": {"tls": {"enabled": False}}})
    container = one(loopback, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-2:] == ["127.0.0.1:50070", "--insecure-loopback"]
    assert {"name": "GRIDMESH_HEALTH_ADDRESS", "value": "127.0.0.1:50070"} in container["env"]
    portfolio_yaml = parse(PortfolioConfig, yaml.safe_load(config_text(loopback, "-portfolio", "portfolio.yaml")))
    assert portfolio_yaml.portfolio.tls is None and portfolio_yaml.portfolio.listen == "127.0.0.1:50070"
    assert "tls" not in {v["name"] for v in one(loopback, "StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    # the exec probes run the image's HEALTHCHECK verbatim
    healthcheck = dockerfile_healthcheck()
    assert container["livenessProbe"]["exec"]["command"] == healthcheck
    for deployment in (d for d in everything if d["kind"] == "Deployment"):
        node = deployment["spec"]["template"]["spec"]["containers"][0]
        assert node["readinessProbe"]["exec"]["command"] == healthcheck
        assert {"name": "GRIDMESH_HEALTH_ADDRESS", "value": "127.0.0.1:50051"} in node["env"]


def test_notes_render(chart):
    notes = chart.render(VALUES_ALL, name=RELEASE, namespace=NAMESPACE)["gridmesh/templates/NOTES.txt"]
    assert "ray://gridmesh-all-ray-head-svc.energy.svc:10001" in notes and "gridmesh-all-node-office" in notes
    notes = chart.render(None, name=RELEASE, namespace=NAMESPACE)["gridmesh/templates/NOTES.txt"]
    assert "create secret generic vpp-gridmesh-tls" in notes and "--host vpp-gridmesh.energy.svc" in notes


# ---- 7. alert rules (a PrometheusRule, off by default)

ALERTS = {
    "GridmeshSiteFailsafe",
    "GridmeshSiteDisconnected",
    "GridmeshImportOverLimit",
    "GridmeshDeviceOffline",
    "GridmeshSolveFailed",
    "GridmeshSolveLate",
}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
PROMQL_FUNCTIONS = {"max", "min", "sum", "avg", "count", "increase", "rate", "changes", "absent"}


def alert_rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def test_alert_rules_are_off_by_default(chart, defaults):
    assert "PrometheusRule" not in kinds(defaults)
    assert "PrometheusRule" not in kinds(render(chart, with_values(alerts__enabled=False)))


def test_alert_rules_render_when_enabled(chart, everything):
    rule = one(everything, "PrometheusRule")
    assert rule["metadata"]["name"] == "gridmesh-all-alerts"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = alert_rules(everything)
    assert set(rules) == ALERTS
    # the values' thresholds reach the rules
    assert rules["GridmeshSiteFailsafe"]["for"] == "15m" and rules["GridmeshImportOverLimit"]["for"] == "2m"
    assert rules["GridmeshDeviceOffline"]["for"] == "20m" and rules["GridmeshSiteDisconnected"]["for"] == "5m"
    assert "4 * gridmesh_portfolio_solve_period_seconds" in rules["GridmeshSolveLate"]["expr"]
    assert '{status="failed"}[1h]' in rules["GridmeshSolveFailed"]["expr"]
    # Prometheus' own templates reach Prometheus unrendered
    assert "{{ $labels.site }}" in rules["GridmeshSiteFailsafe"]["annotations"]["summary"]
    assert all(r["labels"]["severity"] in ("warning", "critical") for r in rules.values())
    # the defaults with only the switch on render them too, with the default thresholds
    defaults_on = alert_rules(render(chart, {"alerts": {"enabled": True}}))
    assert set(defaults_on) == ALERTS and defaults_on["GridmeshSiteFailsafe"]["for"] == "10m"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, set[str]]:
    """Every series name the real exporters can export, with its labels: a node's and the
    portfolio's collectors, built on a real node runtime and a real hub, each on a registry with
    the per-RPC metrics."""
    from portfolio.solvers import MonolithicSolver
    from portfolio.store import PortfolioStore
    from services.metrics_node import NodeCollector
    from services.metrics_portfolio import PortfolioCollector
    from services.observability import Metrics
    from services.portfolio_hub import PortfolioHub
    from sitenode.clock import RealClock
    from sitenode.runtime import NodeRuntime

    folder = tmp_path_factory.mktemp("exporters")
    config, base = nc.load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
    config = config.model_copy(update={"node": config.node.model_copy(update={"journal": str(folder / "j.db")})})
    runtime = NodeRuntime(config, base, RealClock())
    store = PortfolioStore(folder / "portfolio.db")
    hub = PortfolioHub(PortfolioSettings(), store, MonolithicSolver(), RealClock(), trust_hello=True)
    node, portfolio = Metrics(), Metrics()  # one registry per process, as they run
    node.add(NodeCollector(runtime))
    portfolio.add(PortfolioCollector(hub))
    names: dict[str, set[str]] = {}
    try:
        for family in [*node.registry.collect(), *portfolio.registry.collect()]:
            labels = set(getattr(family, "_labelnames", ()))  # a family's labels, even with no samples yet
            labels |= {k for s in family.samples for k in s.labels}
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
            for name in [family.name + x for x in suffixes] + [s.name for s in family.samples]:
                names.setdefault(name, set()).update(labels)
    finally:
        runtime.close()
        store.close()
    return names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names it matches on) for every selector of a PromQL expression; fails on
    an identifier that is neither a gridmesh metric nor a PromQL keyword or function."""
    text = re.sub(r'"[^"]*"', '""', expr)  # strings out first: they may hold anything
    text = re.sub(r"\[[^\]]*\]", "", text)  # and range durations ([30m])
    found: list[tuple[str, set[str]]] = []
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?", text):
        word, matcher = match.group(1), match.group(2)
        before = text[: match.start()].rstrip()
        if before.endswith(("by (", "by(", "on (", "on(", "without (", ",")) and not matcher:
            continue  # a grouping label, checked below
        if word in PROMQL_WORDS or word in PROMQL_FUNCTIONS:
            continue
        assert word.startswith("gridmesh_"), f"{word!r} in {expr!r} is no gridmesh metric"
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matcher or ""))
        found.append((word, labels))
    return found


def test_every_metric_the_rules_use_is_exported(everything, exported):
    assert "gridmesh_node_mode" in exported and "gridmesh_grpc_requests_total" in exported  # the list is real
    used: set[str] = set()
    for name, rule in alert_rules(everything).items():
        found = selectors(rule["expr"])
        assert found, name
        for metric, labels in found:
            assert metric in exported, f"{name}: {metric} is not exported"
            assert labels <= exported[metric], f"{name}: {metric} has no label {labels - exported[metric]}"
            used.add(metric)
        # every label a rule groups or matches by is one its metrics carry (job and instance: Prometheus')
        for group in re.findall(r"(?:by|on)\s*\(([^)]*)\)", rule["expr"]):
            for label in (g.strip() for g in group.split(",")):
                assert label in {"job", "instance"} or all(label in exported[m] for m, _ in found), (name, label)
    # both sides are watched: the portfolio's metrics and the nodes'
    assert any(m.startswith("gridmesh_portfolio_") for m in used) and any(m.startswith("gridmesh_node_") for m in used)


def test_the_selector_parser_catches_a_misspelt_metric():
    with pytest.raises(AssertionError, match="gridmesh_node_mood"):
        for metric, _ in selectors('gridmesh_node_mood{mode="FAILSAFE"} == 1'):
            assert metric in {"gridmesh_node_mode"}, metric
    with pytest.raises(AssertionError, match="no gridmesh metric"):
        selectors("node_mode == 1")
