"""A Kubernetes API server for tests: kmock's emulator on loopback, taught the few
behaviours of the real apiserver (and of its controllers and kubelet) that our runtime
relies on. No control plane can run here; this is the fake, driven over real HTTP by the
real client library (kr8s).

kmock's `KubernetesEmulator` serves discovery, stores objects and streams watches, but
it is "a database over HTTP": no resourceVersion, no conflicts, no controllers. Added:
- **resourceVersion**: every write stamps the object with the next number; a write whose
  body carries a `metadata.resourceVersion` other than the stored one is 409 Conflict
  (the apiserver's optimistic concurrency, which merge patches honour too).
- **Watches that resume**: every change is logged; a watch with `resourceVersion=N`
  replays the changes after N before streaming live ones, and `drop_watches()` ends every
  open watch stream (as an apiserver restart or an idle load balancer does).
- **A StatefulSet controller and kubelet**, in the smallest form: a StatefulSet of
  replicas 1 has a Running, Ready pod `<name>-0` carrying the template's labels and
  annotations; a change of the template's annotations replaces the pod (rolled), and
  replicas 0 or deleting the set deletes it. `crash(pod)` makes its harness container
  crash-loop (restartCount up, `CrashLoopBackOff`), and `logs` holds what the log
  subresource answers.
- **TokenReview**: `issue_token()` mints a ServiceAccount token with an audience and an
  expiry; a TokenReview answers as the apiserver does (`authenticated`, `user.username`
  `system:serviceaccount:<ns>:<name>`, the audiences it matched, or an `error`).
Label selectors are not filtered (kmock ignores them): tests hold only our objects.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import importlib.resources
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import kmock
from kmock._internal import enums, rendering
from kmock._internal.k8s import KubernetesObjectConflictError

__all__ = ["FakeCluster", "open_fake_cluster"]

_STS = kmock.resource("apps", "v1", "statefulsets")
_POD = kmock.resource("", "v1", "pods")
_REVIEW = kmock.resource("authentication.k8s.io", "v1", "tokenreviews")
_WRITES = (enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE)


@dataclass(frozen=True)
class _Token:
    namespace: str
    name: str
    audiences: tuple[str, ...]
    expires: float


class FakeCluster(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock's load_bundled() uses a deprecated importlib call; the same data, read anew.
        bundled = importlib.resources.files("kmock._internal") / "resources.json.gz"
        self.resources.load_data(gzip.decompress(bundled.read_bytes()))
        # kr8s asks for /version/ with a slash, which the apiserver serves too.
        self["get /version/"] << {"major": "1", "minor": "31", "gitVersion": "v1.31.0"}
        self.version = 0
        self.changes: list[tuple[int, Any, dict[str, Any]]] = []
        self.changed = asyncio.Condition()
        self.watch_generation = 0
        self.logs: dict[str, str] = {}
        self.tokens: dict[str, _Token] = {}
        self.conflicts = 0
        # Writes of another party to land just before each of the next N conditional
        # updates (so they conflict), and the resourceVersion each watch started from.
        self.interfere = 0
        self.watch_since: list[str] = []
        self._writing = asyncio.Lock()

    # --- the apiserver -----------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource == _REVIEW and request.action == enums.action.CREATE:
            return await self._review(request)
        if request.action not in _WRITES or request.resource is None or request.subresource:
            return await super()._handle(request)
        async with self._writing:
            key = (request.resource, request.namespace, request.name)
            data = request.data if isinstance(request.data, dict) else None
            if request.action == enums.action.UPDATE and data is not None:
                sent = (data.get("metadata") or {}).get("resourceVersion")
                if sent is not None and self.interfere > 0:
                    self.interfere -= 1
                    self.version += 1
                    other = {"metadata": {"resourceVersion": str(self.version)}}
                    self._objects[request.resource, request.namespace, str(request.name)].patch(
                        other
                    )
                stored = self._stored(*key)
                current = None if stored is None else stored["metadata"].get("resourceVersion")
                if sent is not None and current is not None and str(sent) != str(current):
                    self.conflicts += 1
                    raise KubernetesObjectConflictError()
            if data is not None and request.action != enums.action.DELETE:
                self.version += 1
                meta = data.setdefault("metadata", {})
                meta["resourceVersion"] = str(self.version)
                if request.action == enums.action.CREATE:
                    meta.setdefault("uid", secrets.token_hex(8))
                    meta.setdefault("creationTimestamp", _now())
            response = await super()._handle(request)
            name = request.name or ((data or {}).get("metadata") or {}).get("name")
            namespace = request.namespace or ((data or {}).get("metadata") or {}).get("namespace")
            if request.action == enums.action.DELETE:
                gone = self._objects[request.resource, namespace, str(name)].last.raw
                self.version += 1
                await self._log("DELETED", request.resource, dict(gone))
            else:
                obj = self._stored(request.resource, namespace, name)
                if obj is not None:
                    kind = "ADDED" if request.action == enums.action.CREATE else "MODIFIED"
                    await self._log(kind, request.resource, obj)
            if request.resource == _STS and namespace is not None and name is not None:
                await self._run_statefulset(namespace, name)
            return response

    def _stored(
        self, resource: Any, namespace: str | None, name: str | None
    ) -> dict[str, Any] | None:
        try:
            obj = self._objects[resource, namespace, str(name)]
        except KeyError:
            return None
        return None if obj.deleted else copy.deepcopy(dict(obj.raw))

    async def _log(self, kind: str, resource: Any, obj: dict[str, Any]) -> None:
        async with self.changed:
            self.changes.append((self.version, resource, {"type": kind, "object": obj}))
            self.changed.notify_all()

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        yield b""
        generation = self.watch_generation
        since = request.params.get("resourceVersion")
        self.watch_since.append(since or "")
        if since:
            position = next(
                (i for i, (v, _, _) in enumerate(self.changes) if v > int(since)),
                len(self.changes),
            )
        else:
            for obj in self._listed(request):
                yield {"type": "ADDED", "object": obj}
            position = len(self.changes)
        while True:
            async with self.changed:
                while position >= len(self.changes) and generation == self.watch_generation:
                    await self.changed.wait()
            if generation != self.watch_generation:
                return
            while position < len(self.changes):
                _, resource, event = self.changes[position]
                position += 1
                meta = event["object"].get("metadata", {})
                if resource == request.resource and request.namespace in (
                    None,
                    meta.get("namespace"),
                ):
                    yield event

    async def _serve_list(self, request: rendering.Request) -> Any:
        listed: Any = await super()._serve_list(request)
        listed["metadata"]["resourceVersion"] = str(self.version)  # kmock says "..."
        return listed

    def _listed(self, request: rendering.Request) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(dict(obj.raw))
            for (resource, namespace, _), obj in self._objects.items()
            if resource == request.resource
            and not obj.deleted
            and request.namespace in (None, namespace)
        ]

    async def _serve_fetch(self, request: rendering.Request) -> Any:
        if request.resource == _POD and request.subresource == "log":
            stored = self._stored(_POD, request.namespace, request.name)
            if stored is None:
                raise kmock.KubernetesObjectNotFoundError()
            text = self.logs.get(str(request.name), "")
            lines = request.params.get("tailLines")
            if lines:
                text = "".join(text.splitlines(keepends=True)[-int(lines) :])
            return text.encode()
        return await super()._serve_fetch(request)

    async def drop_watches(self) -> None:
        """End every open watch stream (clients must resume from their resourceVersion)."""
        async with self.changed:
            self.watch_generation += 1
            self.changed.notify_all()

    # --- TokenReview ---------------------------------------------------------------

    def issue_token(
        self,
        namespace: str,
        name: str,
        *,
        audiences: tuple[str, ...] = ("hyperhive",),
        expires_in: float = 3600.0,
    ) -> str:
        token = "eyJ" + secrets.token_urlsafe(48)
        self.tokens[token] = _Token(namespace, name, audiences, time.time() + expires_in)
        return token

    async def _review(self, request: rendering.Request) -> Any:
        spec = (request.data or {}).get("spec", {})
        wanted = tuple(spec.get("audiences") or ())
        token = self.tokens.get(str(spec.get("token", "")))
        status: dict[str, Any]
        if token is None:
            status = {"authenticated": False, "error": "invalid bearer token"}
        elif token.expires < time.time():
            status = {"authenticated": False, "error": "token has expired"}
        elif wanted and not set(wanted) & set(token.audiences):
            status = {
                "authenticated": False,
                "error": "token audiences are invalid for the target audiences",
            }
        else:
            status = {
                "authenticated": True,
                "user": {
                    "username": f"system:serviceaccount:{token.namespace}:{token.name}",
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{token.namespace}",
                    ],
                },
                "audiences": [a for a in wanted if a in token.audiences] or list(token.audiences),
            }
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }
        return await self._render(body)

    async def _render(self, body: dict[str, Any]) -> Any:
        import aiohttp.web

        return aiohttp.web.json_response(body, status=201)

    # --- the StatefulSet controller and the kubelet -------------------------------

    async def _run_statefulset(self, namespace: str, name: str) -> None:
        sts = self._stored(_STS, namespace, name)
        pod_name = f"{name}-0"
        pod = self._stored(_POD, namespace, pod_name)
        wanted = sts is not None and int(sts.get("spec", {}).get("replicas", 1) or 0) >= 1
        template = (sts or {}).get("spec", {}).get("template", {})
        annotations = template.get("metadata", {}).get("annotations", {})
        if pod is not None and (
            not wanted or pod["metadata"].get("annotations", {}) != annotations
        ):
            await self._delete_pod(namespace, pod_name)
            pod = None
        if wanted and pod is None:
            await self._put_pod(namespace, pod_name, template)

    async def _put_pod(self, namespace: str, name: str, template: dict[str, Any]) -> None:
        self.version += 1
        meta = copy.deepcopy(template.get("metadata", {}))
        meta.update(
            name=name,
            namespace=namespace,
            resourceVersion=str(self.version),
            uid=secrets.token_hex(8),
            creationTimestamp=_now(),
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": copy.deepcopy(template.get("spec", {})),
            "status": _running(),
        }
        key = (_POD, namespace, name)
        if key in self._objects:
            self._objects[key].create(pod)
        else:
            self._objects[key] = pod
        await self._log("ADDED", _POD, copy.deepcopy(pod))

    async def _delete_pod(self, namespace: str, name: str) -> None:
        gone = self._stored(_POD, namespace, name)
        if gone is None:
            return
        self._objects[_POD, namespace, name].delete()
        self.version += 1
        await self._log("DELETED", _POD, gone)

    async def crash(self, namespace: str, pod_name: str, *, reason: str = "Error") -> None:
        """The pod's harness container exits and is restarted with a back-off."""
        async with self._writing:
            pod = self._stored(_POD, namespace, pod_name)
            assert pod is not None, f"no pod {pod_name}"
            statuses = pod["status"]["containerStatuses"]
            restarts = int(statuses[0].get("restartCount", 0)) + 1
            self.version += 1
            patch = {
                "metadata": {"resourceVersion": str(self.version)},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        {
                            "name": "harness",
                            "ready": False,
                            "restartCount": restarts,
                            "state": {
                                "waiting": {
                                    "reason": "CrashLoopBackOff",
                                    "message": f"back-off restarting failed container "
                                    f"harness in pod {pod_name}",
                                }
                            },
                            "lastState": {"terminated": {"exitCode": 1, "reason": reason}},
                        }
                    ],
                },
            }
            self._objects[_POD, namespace, pod_name].patch(patch)
            stored = self._stored(_POD, namespace, pod_name)
            assert stored is not None
            await self._log("MODIFIED", _POD, stored)

    def object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, or None (plural as `apps/v1/statefulsets`, `v1/pods`)."""
        return self._stored(kmock.resource(plural), namespace, name)


def _running() -> dict[str, Any]:
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": "harness",
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": _now()}},
            }
        ],
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@asynccontextmanager
async def open_fake_cluster() -> AsyncIterator[FakeCluster]:
    """The fake API server, listening on loopback; its URL is `cluster.url`."""
    async with FakeCluster() as cluster, kmock.Server(cluster, host="127.0.0.1", port=0):
        yield cluster
