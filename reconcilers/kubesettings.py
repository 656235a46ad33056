"""Settings of the kubernetes runtime and of the cluster side of the agent transport.

All from the environment (`HIVE_KUBE_*`), with defaults for a hive-c0re that runs in the
cluster as `deploy/kubernetes/` installs it:

- `HIVE_KUBE_NAMESPACE`: where agents run (default: the pod's own namespace, else
  `hyperhive`);
- `HIVE_KUBE_URL`: the API server's URL, used without credentials (tests, `kubectl
  proxy`); else `HIVE_KUBECONFIG` (default `$KUBECONFIG`); else in-cluster config;
- `HIVE_KUBE_IMAGE`: the agents' image (`Containerfile`; default `hyperhive:latest`);
- `HIVE_KUBE_STORAGE_CLASS` (default: the cluster's) and `HIVE_KUBE_STORAGE_SIZE`
  (`1Gi`): each agent's claim;
- `HIVE_KUBE_CPU` / `HIVE_KUBE_MEMORY` (`1` / `1Gi`): requests = limits of a harness;
- `HIVE_KUBE_CREDENTIALS_SECRET` (`hive-credentials`): a Secret whose keys become the
  agents' environment (`ANTHROPIC_API_KEY`, ...); optional, empty for none;
- `HIVE_KUBE_AGENT_ADDRESS` (`tls://hive-c0re.<ns>.svc:7443`): where agents reach the
  agent protocol; `HIVE_KUBE_CA_CONFIGMAP` (`hive-c0re-ca`): a ConfigMap whose `ca.crt`
  is the CA they trust for it;
- `HIVE_KUBE_GIT_URL` (`http://hive-c0re.<ns>.svc:7000/git/proposed.git`): what the
  manager clones;
- `HIVE_KUBE_TIMEOUT` (`30`): seconds for one API call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IN_CLUSTER_NAMESPACE", "KubeSettings"]

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _namespace(env: Mapping[str, str]) -> str:
    if env.get("HIVE_KUBE_NAMESPACE"):
        return env["HIVE_KUBE_NAMESPACE"]
    try:
        return IN_CLUSTER_NAMESPACE.read_text().strip() or "hyperhive"
    except OSError:
        return "hyperhive"


@dataclass(frozen=True)
class KubeSettings:
    namespace: str = "hyperhive"
    url: str = ""
    kubeconfig: str = ""
    image: str = "hyperhive:latest"
    storage_class: str = ""
    storage_size: str = "1Gi"
    cpu: str = "1"
    memory: str = "1Gi"
    credentials_secret: str = "hive-credentials"
    agent_address: str = ""
    ca_configmap: str = "hive-c0re-ca"
    git_url: str = ""
    timeout: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KubeSettings:
        ns = _namespace(env)
        timeout = env.get("HIVE_KUBE_TIMEOUT", "30")
        try:
            seconds = float(timeout)
        except ValueError as exc:
            raise ValueError(f"HIVE_KUBE_TIMEOUT={timeout!r} is not a number of seconds") from exc
        settings = cls(
            namespace=ns,
            url=env.get("HIVE_KUBE_URL", ""),
            kubeconfig=env.get("HIVE_KUBECONFIG", "") or env.get("KUBECONFIG", ""),
            image=env.get("HIVE_KUBE_IMAGE", "") or cls.image,
            storage_class=env.get("HIVE_KUBE_STORAGE_CLASS", ""),
            storage_size=env.get("HIVE_KUBE_STORAGE_SIZE", "") or cls.storage_size,
            cpu=env.get("HIVE_KUBE_CPU", "") or cls.cpu,
            memory=env.get("HIVE_KUBE_MEMORY", "") or cls.memory,
            credentials_secret=env.get("HIVE_KUBE_CREDENTIALS_SECRET", cls.credentials_secret),
            agent_address=env.get("HIVE_KUBE_AGENT_ADDRESS", "")
            or f"tls://hive-c0re.{ns}.svc:7443",
            ca_configmap=env.get("HIVE_KUBE_CA_CONFIGMAP", "") or cls.ca_configmap,
            git_url=env.get("HIVE_KUBE_GIT_URL", "")
            or f"http://hive-c0re.{ns}.svc:7000/git/proposed.git",
            timeout=seconds,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse values the API server would refuse later, with the variable to fix."""
        if not _DNS_LABEL.match(self.namespace):
            raise ValueError(f"HIVE_KUBE_NAMESPACE={self.namespace!r} is not a namespace name")
        for var, value in (
            ("HIVE_KUBE_STORAGE_SIZE", self.storage_size),
            ("HIVE_KUBE_CPU", self.cpu),
            ("HIVE_KUBE_MEMORY", self.memory),
        ):
            if not _QUANTITY.match(value):
                raise ValueError(f"{var}={value!r} is not a Kubernetes quantity (e.g. 1Gi, 500m)")
        if not self.agent_address.startswith("tls://"):
            raise ValueError("HIVE_KUBE_AGENT_ADDRESS must be tls://HOST:PORT")
        if not 0 < self.timeout < 3600:
            raise ValueError("HIVE_KUBE_TIMEOUT must be between 0 and 3600 seconds")
