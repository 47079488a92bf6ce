"""deploy/: the Kubernetes manifests parsed and checked (valid YAML, known kinds, the token only
as a read-only Secret volume, probes and resources, what the kustomization lists), their
command lines parsed by the real CLI, and the Dockerfile's shape. No cluster or docker needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (the test extra) checks the manifests")

from actorflow import cli  # noqa: E402
from actorflow.autoscaler.__main__ import parse_args as autoscaler_args  # noqa: E402

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "kubernetes"
KNOWN = {
    ("v1", "Namespace"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
}
TOKEN_SECRET = "actorflow-token"


def _objects() -> dict[str, list[dict[str, Any]]]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found[path.name] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def _all() -> list[dict[str, Any]]:
    return [obj for objs in _objects().values() for obj in objs]


def _deployment(name: str) -> dict[str, Any]:
    return next(o for o in _all() if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def _expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args, with plausible values."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def test_every_file_is_valid_yaml_of_known_kinds_and_listed_by_the_kustomization():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    objects = _objects()
    assert sorted(kustomization["resources"]) == sorted(objects)
    for name, docs in objects.items():
        assert docs, f"{name} holds no object"
        for obj in docs:
            assert (obj["apiVersion"], obj["kind"]) in KNOWN, (name, obj.get("kind"))
            assert obj["metadata"]["name"].startswith("actorflow")
            assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "actorflow"
    # Every Deployment's selector matches its pods' labels.
    for obj in _all():
        if obj["kind"] == "Deployment":
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The token Secret is generated from a file, not committed.
    generated = {g["name"]: g for g in kustomization["secretGenerator"]}
    assert generated[TOKEN_SECRET]["files"] == ["token=cluster-token"]
    assert "cluster-token" in (K8S / ".gitignore").read_text().split()
    assert not any(o["kind"] == "Secret" for o in _all())


def test_the_token_is_only_a_read_only_secret_volume_read_with_token_file():
    for obj in _all():
        if obj["kind"] != "Deployment" or obj["metadata"]["name"] == "actorflow-redis":
            continue
        pod = obj["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        token_volumes = [
            n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == TOKEN_SECRET
        ]
        assert token_volumes == ["token"], obj["metadata"]["name"]
        for container in pod["containers"]:
            text = yaml.safe_dump(container)
            # Never in the environment, never as an argument's value.
            for env in container.get("env", []):
                assert "secretKeyRef" not in env.get("valueFrom", {}), env
                assert "TOKEN" not in env["name"], env
            assert "envFrom" not in container
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert mounts["token"]["readOnly"] is True
            token_args = [a for a in container["args"] if a.startswith("--token-file=")]
            assert token_args == [f"--token-file={mounts['token']['mountPath']}/token"]
            assert "ACTORFLOW_TOKEN" not in text
        if obj["metadata"]["name"] == "actorflow-autoscaler":
            continue  # a client of the GCS: no node, no TLS material of its own
        # TLS material, when it is on, the same way (optional until it exists).
        assert volumes["tls"]["secret"] == {
            "secretName": "actorflow-tls",
            "optional": True,
            "defaultMode": 0o440,
        }


def test_nodes_have_probes_resources_and_their_flags_parse():
    env = {"POD_IP": "10.1.2.3", "NUM_CPUS": "2", "MEMORY_BYTES": str(4 << 30)}
    for name, head in (("actorflow-head", True), ("actorflow-worker", False)):
        (container,) = _containers(_deployment(name))
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == 8080
        requests = container["resources"]["requests"]
        assert requests["cpu"] and requests["memory"]
        assert container["resources"]["limits"]["memory"]
        # The resource requests become the node's resources, through the downward API.
        fields = {
            e["name"]: e["valueFrom"].get("resourceFieldRef", e["valueFrom"].get("fieldRef"))
            for e in container["env"]
        }
        assert fields["NUM_CPUS"]["resource"] == "requests.cpu"
        assert fields["MEMORY_BYTES"]["resource"] == "limits.memory"
        assert fields["POD_IP"]["fieldPath"] == "status.podIP"
        args = cli.build_parser().parse_args(
            ["start", *(_expand(a, env) for a in container["args"]), "--block"]
        )
        assert args.head is head
        assert args.num_cpus == 2 and args.memory == 4 << 30 and args.num_gpus == 0
        assert args.host == "10.1.2.3" and args.metrics_export_port == 8080
        assert (
            0
            < args.drain_grace_seconds
            < _deployment(name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        )
        annotations = _deployment(name)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "8080"
        if head:
            assert args.port == 6380 and args.storage == "redis://actorflow-redis:6379/0"
            assert args.gcs_metrics_port == 8081
        else:
            assert args.address == "actorflow-head:6380"  # the head's Service by name


def test_head_service_redis_pdb_and_autoscaler():
    services = {o["metadata"]["name"]: o for o in _all() if o["kind"] == "Service"}
    head = services["actorflow-head"]
    assert {p["name"]: p["port"] for p in head["spec"]["ports"]} == {
        "gcs": 6380,
        "metrics": 8080,
        "gcs-metrics": 8081,
        "dashboard": 8265,
    }
    assert head["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert head["spec"]["selector"]["app.kubernetes.io/component"] == "head"
    assert services["actorflow-redis"]["spec"]["ports"][0]["port"] == 6379
    redis = _deployment("actorflow-redis")
    claim = redis["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
    assert claim["claimName"] in {
        o["metadata"]["name"] for o in _all() if o["kind"] == "PersistentVolumeClaim"
    }
    assert "--appendonly" in _containers(redis)[0]["args"]
    assert _deployment("actorflow-head")["spec"]["strategy"]["type"] == "Recreate"
    (pdb,) = [o for o in _all() if o["kind"] == "PodDisruptionBudget"]
    worker_labels = _deployment("actorflow-worker")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= worker_labels.items()
    # The autoscaler's flags parse, it scales the worker Deployment, and may only do that.
    scaler = _deployment("actorflow-autoscaler")
    (container,) = _containers(scaler)
    assert container["command"][-2:] == ["-m", "actorflow.autoscaler"]
    args = autoscaler_args(container["args"])
    assert args.provider == "kubernetes" and args.deployment == "actorflow-worker"
    assert container["livenessProbe"] and container["readinessProbe"]
    assert container["resources"]["requests"]
    assert scaler["spec"]["template"]["spec"]["serviceAccountName"] == "actorflow-autoscaler"
    (role,) = [o for o in _all() if o["kind"] == "Role"]
    rules = {tuple(r["resources"]): set(r["verbs"]) for r in role["rules"]}
    assert rules == {("deployments/scale",): {"get", "patch"}, ("pods",): {"list", "patch"}}


def test_dockerfile_builds_a_wheel_runs_as_non_root_and_blocks():
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(re.fullmatch(r"python:3\.\d+-slim", f) for f in froms), froms
    assert "pip wheel" in text and "/wheels/*.whl" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    (entry,) = re.findall(r"^ENTRYPOINT (.+)$", text, re.M)
    assert yaml.safe_load(entry) == ["tini", "--", "actorflow", "start", "--block"]
    for copied in ("actorflow", "transports", "pyproject.toml"):
        assert re.search(rf"^COPY .*{re.escape(copied)}", text, re.M), copied
