"""deploy/k8s: schema validation plus the structural rules the product depends on.

Built-in kinds are validated (strict: unknown fields rejected) with kubernetes-validate, which
ships the Kubernetes OpenAPI schemas. It has no schema for CRDs, so KEDA's ScaledObject is
validated against the schema below, written from KEDA's ScaledObject CRD, and its redis trigger
is checked field by field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
NAMESPACE = "resolutionflow"
SECRET_NAME = "resolutionflow-secrets"
K8S_VERSION = "1.37.0"

API = {"scripts": 8001, "pilot": 8002, "notes": 8003, "web": 8000}
API_APPS = {
    "scripts": "services.scripts:create_app()",
    "pilot": "app.pilot:create_app()",
    "notes": "services.notes:create_app()",
    "web": "app.gateway:create_app()",
}
WORKERS = {"worker-notes": "notes", "worker-events": "events", "worker-webhooks": "webhooks"}
KEDA_SCALED = {"worker-notes": "notes", "worker-webhooks": "webhooks"}
APP_DEPLOYMENTS = {*API, *WORKERS, "beat"}
TASK_TIME_LIMIT_S = 120

Docs = list[tuple[Path, dict[str, Any]]]

_INT = {"type": "integer", "minimum": 0}
_POLICY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "value", "periodSeconds"],
    "properties": {
        "type": {"enum": ["Pods", "Percent"]},
        "value": {"type": "integer", "minimum": 1},
        "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
    },
}
_RULES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {"type": "array", "minItems": 1, "items": _POLICY},
    },
}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": _INT,
                "cooldownPeriod": _INT,
                "initialCooldownPeriod": _INT,
                "idleReplicaCount": _INT,
                "minReplicaCount": _INT,
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"scaleUp": _RULES, "scaleDown": _RULES},
                                },
                            },
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "useCachedMetrics": {"type": "boolean"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            # KEDA trigger metadata is map[string]string: numbers must be quoted.
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
REDIS_TRIGGER_KEYS = {
    "address",
    "addressFromEnv",
    "host",
    "hostFromEnv",
    "port",
    "portFromEnv",
    "username",
    "usernameFromEnv",
    "passwordFromEnv",
    "databaseIndex",
    "enableTLS",
    "unsafeSsl",
    "listName",
    "listLength",
    "activationListLength",
}


# --------------------------------------------------------------------------- helpers


def objects(docs: Docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in docs if d["kind"] == kind}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def main_container(obj: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(obj)["containers"]
    assert len(containers) == 1, obj["metadata"]["name"]
    container: dict[str, Any] = containers[0]
    return container


def container_env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --------------------------------------------------------------------------- schemas


def test_builtin_kinds_validate_against_kubernetes_schemas(
    k8s_documents: Docs, kubernetes_validate: Any
) -> None:
    validated = 0
    for path, doc in k8s_documents:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        name = f"{path.name}: {doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{name}: no Kubernetes schema for {doc['apiVersion']} {doc['kind']}")
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {where}: {exc.message}")
        validated += 1
    assert validated >= 30


def test_kubernetes_validate_rejects_broken_objects(kubernetes_validate: Any) -> None:
    """The validation above is real: a typo'd field and a wrong type are both caught."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "readinessProbes": {}}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment["spec"]["template"]["spec"]["containers"] = {"name": "c"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=False)


def test_keda_scaled_objects_match_the_crd_schema(k8s_documents: Docs) -> None:
    import jsonschema

    scaled = [d for _, d in k8s_documents if d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in scaled} == {"ScaledObject"}
    validator = jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA)
    for doc in scaled:
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    broken = {**scaled[0], "spec": {**scaled[0]["spec"], "maxReplicas": 3}}
    assert list(validator.iter_errors(broken)), "the schema must reject unknown fields"


def test_only_known_kinds(k8s_documents: Docs) -> None:
    kinds = {d["kind"] for _, d in k8s_documents}
    allowed = {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "StatefulSet",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "ScaledObject",
    }
    assert kinds <= allowed, kinds - allowed
    assert "Secret" not in kinds


def test_everything_lives_in_the_namespace(k8s_documents: Docs) -> None:
    namespaces = objects(k8s_documents, "Namespace")
    assert set(namespaces) == {NAMESPACE}
    for path, doc in k8s_documents:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, (path.name, doc["kind"])


def test_kustomization_lists_every_manifest(load_yaml: Callable[[Path], list[Any]]) -> None:
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == NAMESPACE
    assert {i["name"] for i in kustomization["images"]} == {"resolutionflow"}


# --------------------------------------------------------------------------- secrets and config


def test_secrets_are_referenced_never_defined(k8s_documents: Docs) -> None:
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml"))
    assert not re.search(r"^kind:\s*Secret\s*$", text, re.M)
    assert not re.search(r"sk-ant-|BEGIN [A-Z ]*PRIVATE KEY", text)
    configmaps = objects(k8s_documents, "ConfigMap")
    for name, cm in configmaps.items():
        for key in cm.get("data", {}):
            assert not re.search(r"SECRET|PASSWORD|API_KEY|TOKEN", key), f"{name}.{key}"
            value = cm["data"][key]
            assert not re.search(r"://[^/@\s]+:[^@\s]+@", value), f"{name}.{key} has a password"
    refs = 0
    for kind in ("Deployment", "Job", "StatefulSet"):
        for name, obj in objects(k8s_documents, kind).items():
            for container in pod_spec(obj)["containers"]:
                for source in container.get("envFrom", []):
                    if "secretRef" in source:
                        assert source["secretRef"]["name"] == SECRET_NAME, name
                        refs += 1
                    if "configMapRef" in source:
                        assert source["configMapRef"]["name"] in configmaps, name
                for env in container.get("env", []):
                    assert "value" not in env or not re.search(
                        r"SECRET|PASSWORD|API_KEY|TOKEN", env["name"]
                    ), f"{name}: {env['name']} set inline"
                    ref = env.get("valueFrom", {})
                    if "secretKeyRef" in ref:
                        assert ref["secretKeyRef"]["name"] == SECRET_NAME
                    if "configMapKeyRef" in ref:
                        cm = configmaps[ref["configMapKeyRef"]["name"]]
                        assert ref["configMapKeyRef"]["key"] in cm["data"], name
    assert refs >= len(APP_DEPLOYMENTS) + 1  # every app Deployment and the migration Job
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert f"kubectl -n {NAMESPACE} create secret generic {SECRET_NAME}" in readme


def test_config_splits_broker_and_cache_redis(k8s_documents: Docs) -> None:
    data = objects(k8s_documents, "ConfigMap")["resolutionflow-config"]["data"]
    assert data["REDIS_URL"].startswith("redis://redis-broker:")
    assert data["CACHE_REDIS_URL"].startswith("redis://redis-cache:")
    assert data["REDIS_BROKER_ADDRESS"] == data["REDIS_URL"].split("//")[1].split("/")[0]
    assert data["RF_ENV"] == "prod"
    redis = {**objects(k8s_documents, "Deployment"), **objects(k8s_documents, "StatefulSet")}
    cache_args = main_container(redis["redis-cache"])["args"]
    assert cache_args[cache_args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert re.fullmatch(r"\d+[kmg]b?", cache_args[cache_args.index("--maxmemory") + 1], re.I)
    broker_args = main_container(redis["redis-broker"])["args"]
    assert broker_args[broker_args.index("--maxmemory-policy") + 1] == "noeviction"
    assert broker_args[broker_args.index("--appendonly") + 1] == "yes"
    assert redis["redis-broker"]["kind"] == "StatefulSet"
    assert redis["redis-broker"]["spec"]["volumeClaimTemplates"]


# --------------------------------------------------------------------------- workloads


def test_expected_deployments(k8s_documents: Docs) -> None:
    deployments = objects(k8s_documents, "Deployment")
    assert APP_DEPLOYMENTS <= set(deployments)
    assert set(deployments) - APP_DEPLOYMENTS <= {"redis-cache"}


def test_every_workload_is_hardened_and_sized(k8s_documents: Docs) -> None:
    workloads = {
        **objects(k8s_documents, "Deployment"),
        **objects(k8s_documents, "StatefulSet"),
        **objects(k8s_documents, "Job"),
    }
    for name, obj in workloads.items():
        pod = pod_spec(obj)
        security = pod.get("securityContext", {})
        assert security.get("runAsNonRoot") is True, name
        assert int(security.get("runAsUser", 0)) > 0, name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (name, bound)
            csc = container.get("securityContext", {})
            assert csc.get("allowPrivilegeEscalation") is False, name
            assert csc.get("readOnlyRootFilesystem") is True, name
            assert csc.get("capabilities", {}).get("drop") == ["ALL"], name
            image = container["image"]
            assert ":" in image and not image.endswith(":latest"), (name, image)


def test_app_pods_share_the_image_and_a_writable_tmp(k8s_documents: Docs) -> None:
    workloads = {**objects(k8s_documents, "Deployment"), **objects(k8s_documents, "Job")}
    images = set()
    for name, obj in workloads.items():
        if name.startswith("redis"):
            continue
        container = main_container(obj)
        images.add(container["image"])
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod_spec(obj).get("volumes", [])}
        assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]], name
    assert len(images) == 1 and next(iter(images)).startswith("resolutionflow:")


def test_api_deployments_probe_healthz(k8s_documents: Docs) -> None:
    deployments = objects(k8s_documents, "Deployment")
    for name, port in API.items():
        obj = deployments[name]
        container = main_container(obj)
        assert container["command"][0] == "gunicorn"
        assert container["command"][-1] == API_APPS[name]
        assert container["command"][container["command"].index("-c") + 1].endswith(
            "deploy/gunicorn.conf.py"
        )
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": port}
        assert container_env(container)["PORT"]["value"] == str(port)
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == "/healthz", (name, probe)
            assert get["port"] in ("http", port), (name, probe)
        liveness, readiness = container["livenessProbe"], container["readinessProbe"]
        # Liveness gives up much later than readiness: a dependency outage (503 from
        # /healthz) takes pods out of rotation long before it restarts them.
        assert liveness["periodSeconds"] * liveness["failureThreshold"] > 3 * (
            readiness["periodSeconds"] * readiness["failureThreshold"]
        )
        grace = pod_spec(obj)["terminationGracePeriodSeconds"]
        conf = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
        graceful = re.search(r'"GUNICORN_GRACEFUL_TIMEOUT",\s*(\d+)', conf)
        assert graceful and grace > int(graceful.group(1)), name
        assert obj["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_workers(k8s_documents: Docs) -> None:
    deployments = objects(k8s_documents, "Deployment")
    for name, queue in WORKERS.items():
        obj = deployments[name]
        container = main_container(obj)
        cmd = container["command"]
        assert cmd[:4] == ["celery", "-A", "services.notes.worker", "worker"]
        assert cmd[cmd.index("-Q") + 1] == queue
        assert cmd[cmd.index("--pool") + 1] == "threads"
        assert cmd[cmd.index("--prefetch-multiplier") + 1] == "1", name
        # No HTTP API: liveness asks the worker itself over the broker; no readiness (no
        # Service routes to it).
        liveness = " ".join(container["livenessProbe"]["exec"]["command"])
        assert "inspect ping" in liveness and "$HOSTNAME" in liveness, name
        assert "readinessProbe" not in container
        assert pod_spec(obj)["terminationGracePeriodSeconds"] > TASK_TIME_LIMIT_S, name
        assert {p["containerPort"] for p in container["ports"]} == {9808}


def test_beat_is_a_singleton(k8s_documents: Docs) -> None:
    beat = objects(k8s_documents, "Deployment")["beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    cmd = main_container(beat)["command"]
    assert cmd[:4] == ["celery", "-A", "services.notes.worker", "beat"]
    assert cmd[cmd.index("--schedule") + 1].startswith("/tmp/")
    targets = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in objects(k8s_documents, "HorizontalPodAutoscaler").values()
    }
    assert "beat" not in targets


def test_migration_job(k8s_documents: Docs) -> None:
    (job,) = objects(k8s_documents, "Job").values()
    assert main_container(job)["command"] == ["python", "-m", "app.cli", "migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1


def test_services_select_their_deployments(k8s_documents: Docs) -> None:
    workloads = {**objects(k8s_documents, "Deployment"), **objects(k8s_documents, "StatefulSet")}
    services = objects(k8s_documents, "Service")
    assert set(API) <= set(services)
    for name, svc in services.items():
        matches = [w for w in workloads.values() if selects(svc["spec"]["selector"], pod_labels(w))]
        assert len(matches) == 1, f"service {name} selects {len(matches)} workloads"
        named_ports = {p.get("name") for p in main_container(matches[0]).get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in named_ports, (name, port)
    for name, port in API.items():
        assert services[name]["spec"]["ports"][0]["port"] == port


# --------------------------------------------------------------------------- ingress

ROUTES = [
    ("/api/v1/auth/token", "scripts"),
    ("/api/v1/auth/me", "scripts"),
    ("/api/v1/scripts", "scripts"),
    ("/api/v1/scripts/templates", "scripts"),
    ("/api/v1/scripts/templates/0b9e/versions", "scripts"),
    ("/api/v1/openapi/scripts.json", "scripts"),
    ("/api/v1/openapi/pilot.json", "pilot"),
    ("/api/v1/openapi/notes.json", "notes"),
    ("/api/v1/ai-sessions", "pilot"),
    ("/api/v1/ai-sessions/6f1c2a", "pilot"),
    ("/api/v1/ai-sessions/6f1c2a/messages", "pilot"),
    ("/api/v1/ai-sessions/6f1c2a/resolution-note", "notes"),
    ("/api/v1/ai-sessions/6f1c2a/resolution-note/preview", "notes"),
    ("/api/v1/ai-sessions/a/b/resolution-note", "pilot"),
    ("/api/v1/integrations", "notes"),
    ("/api/v1/integrations/webhooks", "notes"),
    ("/api/v1/kb-articles", "notes"),
    ("/api/v1/kb-articles/4b2d", "notes"),
    ("/api/v1/usage", "pilot"),
    ("/api/v1/usage/budget", "pilot"),
    ("/", "web"),
    ("/api/docs", "web"),
    ("/static/app.js", "web"),
]


def route(ingresses: dict[str, dict[str, Any]], host: str, path: str) -> tuple[str, str]:
    """Which (ingress, service) ingress-nginx sends `path` to.

    Exact paths win. Then, because one Ingress on the host sets use-regex, ingress-nginx
    renders every path of the host as a case-insensitive regex anchored at the start and tries
    them longest first; without use-regex it takes the longest element-wise prefix.
    """
    rules = []
    regex_host = False
    for name, ing in ingresses.items():
        annotations = ing["metadata"].get("annotations", {})
        for rule in ing["spec"]["rules"]:
            if rule.get("host") != host:
                continue
            regex_host |= annotations.get("nginx.ingress.kubernetes.io/use-regex") == "true"
            for p in rule["http"]["paths"]:
                rules.append((name, p["path"], p["pathType"], p["backend"]["service"]["name"]))
    for name, p, kind, svc in rules:
        if kind == "Exact" and path == p:
            return name, svc
    candidates = sorted((r for r in rules if r[2] != "Exact"), key=lambda r: -len(r[1]))
    for name, p, kind, svc in candidates:
        if regex_host:
            if re.match(p, path, re.I):
                return name, svc
        elif kind == "Prefix" and (
            p == "/" or path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/")
        ):
            return name, svc
    raise AssertionError(f"no ingress path matches {path}")


def test_ingress_routes_every_family(k8s_documents: Docs) -> None:
    ingresses = objects(k8s_documents, "Ingress")
    hosts = {r.get("host") for i in ingresses.values() for r in i["spec"]["rules"]}
    assert len(hosts) == 1
    (host,) = hosts
    for ing in ingresses.values():
        assert ing["spec"]["ingressClassName"] == "nginx"
    wrong = {}
    for path, service in ROUTES:
        got = route(ingresses, host, path)[1]
        if got != service:
            wrong[path] = (got, service)
    assert not wrong, f"path: (got, expected) {wrong}"


def test_ingress_stream_and_regex_annotations(k8s_documents: Docs) -> None:
    ingresses = objects(k8s_documents, "Ingress")
    host = ingresses["resolutionflow"]["spec"]["rules"][0]["host"]
    pilot_ing, _ = route(ingresses, host, "/api/v1/ai-sessions/s1/messages")
    annotations = ingresses[pilot_ing]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 120
    note_ing, _ = route(ingresses, host, "/api/v1/ai-sessions/s1/resolution-note")
    note = ingresses[note_ing]
    assert note["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    (path,) = [p for r in note["spec"]["rules"] for p in r["http"]["paths"]]
    assert path["pathType"] == "ImplementationSpecific"
    assert re.fullmatch(path["path"], "/api/v1/ai-sessions/abc/resolution-note")
    metrics_ing, _ = route(ingresses, host, "/metrics")
    deny = ingresses[metrics_ing]["metadata"]["annotations"]
    assert "0.0.0.0/0" in deny["nginx.ingress.kubernetes.io/denylist-source-range"]


def test_ingress_rate_limits_logins_per_client(k8s_documents: Docs) -> None:
    ingresses = objects(k8s_documents, "Ingress")
    host = ingresses["resolutionflow"]["spec"]["rules"][0]["host"]
    login_ing, service = route(ingresses, host, "/api/v1/auth/token")
    annotations = ingresses[login_ing]["metadata"]["annotations"]
    assert service == "scripts"
    assert 0 < int(annotations["nginx.ingress.kubernetes.io/limit-rpm"]) <= 60
    # Only the token endpoint: the rest of the API is not limited by this Ingress.
    assert route(ingresses, host, "/api/v1/auth/me")[0] != login_ing


def test_ingress_backends_exist(k8s_documents: Docs) -> None:
    services = objects(k8s_documents, "Service")
    for name, ing in objects(k8s_documents, "Ingress").items():
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                backend = p["backend"]["service"]
                assert backend["name"] in services, (name, backend)
                ports = {sp["port"] for sp in services[backend["name"]]["spec"]["ports"]}
                assert backend["port"]["number"] in ports, (name, backend)


# --------------------------------------------------------------------------- scaling


def test_hpas_target_api_deployments(k8s_documents: Docs) -> None:
    deployments = objects(k8s_documents, "Deployment")
    hpas = objects(k8s_documents, "HorizontalPodAutoscaler")
    targets = {}
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, name
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        targets[ref["name"]] = hpa
        resources = main_container(deployments[ref["name"]])["resources"]["requests"]
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Resource":
                assert metric["resource"]["name"] in resources, name
    assert set(targets) == set(API)


def test_keda_scales_notes_and_webhooks_workers(k8s_documents: Docs) -> None:
    deployments = objects(k8s_documents, "Deployment")
    scaled = objects(k8s_documents, "ScaledObject")
    hpa_targets = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in objects(k8s_documents, "HorizontalPodAutoscaler").values()
    }
    by_target = {so["spec"]["scaleTargetRef"]["name"]: so for so in scaled.values()}
    assert set(by_target) == set(KEDA_SCALED)
    for target, queue in KEDA_SCALED.items():
        so = by_target[target]
        deployment = deployments[target]
        assert so["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert "replicas" not in deployment["spec"], f"{target}: KEDA owns the replica count"
        assert target not in hpa_targets, f"{target} has both an HPA and a ScaledObject"
        assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "redis"
        meta = trigger["metadata"]
        assert set(meta) <= REDIS_TRIGGER_KEYS, set(meta) - REDIS_TRIGGER_KEYS
        assert meta["listName"] == queue
        assert int(meta["listLength"]) >= 1
        env = container_env(main_container(deployment))
        assert meta["addressFromEnv"] in env, "KEDA reads the address from the target's env"
        # The worker consumes the queue KEDA measures.
        cmd = main_container(deployment)["command"]
        assert cmd[cmd.index("-Q") + 1] == queue
        down = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 120


def test_pdbs_cover_apis_and_workers_not_beat(k8s_documents: Docs) -> None:
    deployments = objects(k8s_documents, "Deployment")
    covered = set()
    for name, pdb in objects(k8s_documents, "PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        matches = [d for d, obj in deployments.items() if selects(selector, pod_labels(obj))]
        assert len(matches) == 1, name
        covered.add(matches[0])
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] < (
                deployments[matches[0]]["spec"].get("replicas") or 2
            )
    assert covered == set(API) | set(WORKERS)
