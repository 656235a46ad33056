"""The Kubernetes objects of one agent, as JSON: pure functions of the build and settings.

Per agent `<name>`: a ServiceAccount `hive-<name>` (its identity on the agent protocol:
`controller.agent_tls`), a claim `hive-<name>-state` for its notes, history and
credentials (kept when the agent is destroyed unless purged), a Secret `hive-<name>-key`
with the harness key, and a StatefulSet `hive-<name>` of one replica whose pod runs the
harness. The rev, the harness version and a digest of the key are annotations on the
pod template, so any of them changing rolls the pod.

The pod holds no token for the API server (`automountServiceAccountToken: false`); it
gets a projected ServiceAccount token for audience `hyperhive` only, which the kubelet
rotates, and which the API server itself refuses. It runs as a non-root user with no
capabilities. The manager's first container clones the proposed repo over git HTTP with
that token (hive-c0re accepts the manager's token on `/git/`), and the clone keeps a
credential helper that reads the token afresh for every push.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gitstore.spec import MANAGER
from reconcilers.kubesettings import KubeSettings
from reconcilers.runtime import AgentBuild

__all__ = [
    "AGENT_LABEL",
    "ANNOTATION_HARNESS",
    "ANNOTATION_REV",
    "CONTAINER",
    "MANAGED",
    "claim",
    "key_secret",
    "pod_name",
    "service_account",
    "statefulset",
    "template",
    "workload_name",
]

MANAGED = {"app.kubernetes.io/managed-by": "hyperhive"}
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=hyperhive"
AGENT_LABEL = "hyperhive.dev/agent"
ANNOTATION_REV = "hyperhive.dev/rev"
ANNOTATION_HARNESS = "hyperhive.dev/harness-version"
ANNOTATION_KEY = "hyperhive.dev/key-digest"
CONTAINER = "harness"
USER = 1000
TOKEN_DIR = "/run/hive-token"

# The manager's clone: over git HTTP with its ServiceAccount token as the password.
_HELPER = '!f() { echo username=hm1nd; printf "password=%s\\n" "$(cat /run/hive-token/token)"; }; f'
_CLONE = f"""set -eu
if [ ! -d /state/agents/.git ]; then
  git -c credential.helper='{_HELPER}' clone -q "$HIVE_GIT_URL" /state/agents
  git -C /state/agents config credential.helper '{_HELPER}'
fi
"""


def workload_name(name: str) -> str:
    return f"hive-{name}"


def pod_name(name: str) -> str:
    return f"{workload_name(name)}-0"


def _meta(name: str, suffix: str = "", namespace: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": workload_name(name) + suffix,
        "labels": {**MANAGED, AGENT_LABEL: name},
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def service_account(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace=ns),
        "automountServiceAccountToken": False,
    }


def claim(name: str, settings: KubeSettings) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.storage_size}},
    }
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(name, "-state", settings.namespace),
        "spec": spec,
    }


def key_secret(name: str, ns: str, key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, "-key", ns),
        "type": "Opaque",
        "stringData": {"key": key},
    }


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _env(build: AgentBuild, settings: KubeSettings) -> list[dict[str, Any]]:
    values = {
        "HIVE_AGENT": build.name,
        "HIVE_SOCKET": settings.agent_address,
        "HIVE_TLS_CA": "/run/hive-ca/ca.crt",
        "HIVE_TOKEN_FILE": f"{TOKEN_DIR}/token",
        "HIVE_KEY_FILE": "/run/hive-key/key",
        "HIVE_STATE": "/state/notes",
        "CLAUDE_CONFIG_DIR": "/state/claude",
        "HOME": "/state/home",
        "PYTHONUNBUFFERED": "1",
    }
    if build.name == MANAGER:
        values["HIVE_AGENTS_DIR"] = "/state/agents"
    if build.spec.model:
        values["HIVE_MODEL"] = build.spec.model
    return [{"name": k, "value": v} for k, v in values.items()]


def template(build: AgentBuild, settings: KubeSettings, key: str) -> dict[str, Any]:
    """The pod template; its annotations carry what a change must roll."""
    name = build.name
    base = workload_name(name)
    command = ["hive-m1nd" if name == MANAGER else "hive-ag3nt", "serve"]
    resources = {"cpu": settings.cpu, "memory": settings.memory}
    security = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    mounts = [
        {"name": "state", "mountPath": "/state"},
        {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
        {"name": "key", "mountPath": "/run/hive-key", "readOnly": True},
        {"name": "ca", "mountPath": "/run/hive-ca", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "command": command,
        "env": _env(build, settings),
        "resources": {"requests": resources, "limits": resources},
        "securityContext": security,
        "volumeMounts": mounts,
    }
    if settings.credentials_secret:
        container["envFrom"] = [
            {"secretRef": {"name": settings.credentials_secret, "optional": True}}
        ]
    spec: dict[str, Any] = {
        "serviceAccountName": base,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": USER, "fsGroup": USER},
        "containers": [container],
        "volumes": [
            {
                "name": "state",
                "persistentVolumeClaim": {"claimName": f"{base}-state"},
            },
            {
                "name": "token",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": "hyperhive",
                                "expirationSeconds": 3600,
                                "path": "token",
                            }
                        }
                    ]
                },
            },
            {
                "name": "key",
                "secret": {"secretName": f"{base}-key", "defaultMode": 0o400},
            },
            {"name": "ca", "configMap": {"name": settings.ca_configmap}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if name == MANAGER:
        spec["initContainers"] = [
            {
                "name": "clone",
                "image": settings.image,
                "command": ["sh", "-c", _CLONE],
                "env": [{"name": "HIVE_GIT_URL", "value": settings.git_url}],
                "securityContext": security,
                "volumeMounts": mounts[:2] + mounts[-1:],
            }
        ]
    return {
        "metadata": {
            "labels": {**MANAGED, AGENT_LABEL: name},
            "annotations": {
                ANNOTATION_REV: build.rev,
                ANNOTATION_HARNESS: build.harness_version,
                ANNOTATION_KEY: key_digest(key),
            },
        },
        "spec": spec,
    }


def statefulset(build: AgentBuild, settings: KubeSettings, key: str) -> dict[str, Any]:
    """A StatefulSet of one replica, created stopped (replicas 0): `start` scales it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(build.name, namespace=settings.namespace),
        "spec": {
            "replicas": 0,
            "serviceName": workload_name(build.name),
            "selector": {"matchLabels": {AGENT_LABEL: build.name}},
            "podManagementPolicy": "Parallel",
            "template": template(build, settings, key),
        },
    }
