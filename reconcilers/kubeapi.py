"""The one adapter to the Kubernetes API: kr8s underneath, JSON objects and our errors on top.

kr8s (async, built on anyio and httpx) finds the cluster (a kubeconfig, the in-cluster
ServiceAccount, or a plain URL), keeps the session and re-reads rotated credentials on a
401. We use it at the level of `call_api` with plain JSON objects rather than its object
classes: our callers need a handful of verbs on a handful of kinds, the JSON is what the
API documents, and nothing depends on kr8s's discovery (its string kinds ask the server
for every API group first). Foreign errors become ours at this boundary: `KubeError`
(with the HTTP status), `KubeConflictError` for 409 (an optimistic-concurrency miss or
an object that exists), `KubeGoneError` for a watch's 410 (its resourceVersion is too
old: list again).

Every call but a watch runs under `timeout` seconds (a cancel scope, not a client
timeout); a watch runs until the server ends it, and the caller resumes from the last
resourceVersion it saw.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import kr8s
import kr8s.asyncio

__all__ = [
    "JSONObject",
    "KubeApi",
    "KubeConflictError",
    "KubeError",
    "KubeGoneError",
    "Review",
    "connect_kube",
]

log = logging.getLogger(__name__)
JSONObject = dict[str, Any]


class KubeError(Exception):
    """Raised when the API server refuses a call or cannot be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KubeConflictError(KubeError):
    """Raised on 409: the object changed since it was read, or it exists already."""


class KubeGoneError(KubeError):
    """Raised when a watch's resourceVersion is too old (410): list again."""


@dataclass(frozen=True)
class Review:
    """A TokenReview's verdict on one bearer token."""

    authenticated: bool
    username: str = ""
    audiences: tuple[str, ...] = ()
    error: str = ""


def _message(exc: BaseException) -> tuple[str, int]:
    response = getattr(exc, "response", None)
    status = int(getattr(response, "status_code", 0) or 0)
    text = str(exc)
    if response is not None:
        try:
            body = response.json()
            text = str(body.get("message") or text) if isinstance(body, dict) else text
        except (ValueError, httpx.ResponseNotRead):
            pass
    return text, status


class KubeApi:
    def __init__(self, api: Any, namespace: str, *, timeout: float = 30.0) -> None:
        self._api = api
        self.namespace = namespace
        self.timeout = timeout
        self.closed = False

    async def aclose(self) -> None:
        """Close the HTTP session; calls after this fail (kr8s would open a new one)."""
        self.closed = True
        session = getattr(self._api, "_session", None)
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.aclose()

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(
        self,
        method: str,
        version: str,
        url: str,
        *,
        namespaced: bool = True,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        merge_patch: bool = False,
    ) -> httpx.Response:
        if self.closed:
            raise KubeError(f"{method} {url}: the API connection is closed")
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["content"] = json.dumps(body)
            content_type = "application/merge-patch+json" if merge_patch else "application/json"
            kwargs["headers"] = {"content-type": content_type}
        if params:
            kwargs["params"] = dict(params)
        try:
            with anyio.fail_after(self.timeout):
                async with self._api.call_api(
                    method,
                    version=version,
                    namespace=self.namespace if namespaced else None,
                    url=url,
                    **kwargs,
                ) as response:
                    await response.aread()
                    return response  # type: ignore[no-any-return]
        except TimeoutError as exc:
            raise KubeError(f"{method} {url}: no answer within {self.timeout:g} s") from exc
        except kr8s.ServerError as exc:
            text, status = _message(exc)
            cls = KubeConflictError if status == 409 else KubeError
            raise cls(f"{method} {url}: {text}", status) from exc
        except (httpx.HTTPError, OSError, kr8s.APITimeoutError) as exc:
            raise KubeError(f"{method} {url}: {exc}") from exc

    async def get(self, version: str, url: str) -> JSONObject | None:
        """The object at `url`, or None when there is none."""
        try:
            response = await self._call("GET", version, url)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(response.json())

    async def create(self, version: str, collection: str, body: Mapping[str, Any]) -> JSONObject:
        response = await self._call("POST", version, collection, body=body)
        return dict(response.json())

    async def ensure(self, version: str, collection: str, body: Mapping[str, Any]) -> None:
        """Create `body` unless an object of its name exists already."""
        with contextlib.suppress(KubeConflictError):
            await self.create(version, collection, body)

    async def patch(self, version: str, url: str, body: Mapping[str, Any]) -> JSONObject:
        """A JSON merge patch; a `metadata.resourceVersion` in it is a precondition."""
        response = await self._call("PATCH", version, url, body=body, merge_patch=True)
        return dict(response.json())

    async def delete(self, version: str, url: str) -> bool:
        """Delete; False when there was nothing to delete."""
        try:
            await self._call("DELETE", version, url)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def list(
        self, version: str, collection: str, *, labels: str = ""
    ) -> tuple[list[JSONObject], str]:
        """The objects of a collection and the list's resourceVersion (to watch from)."""
        params = {"labelSelector": labels} if labels else None
        data = (await self._call("GET", version, collection, params=params)).json()
        items = [dict(item) for item in data.get("items") or []]
        return items, str((data.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(
        self, version: str, collection: str, *, since: str = "", labels: str = ""
    ) -> AsyncIterator[tuple[str, JSONObject]]:
        """Changes to a collection after `since`, until the server ends the stream."""
        if self.closed:
            raise KubeError(f"watch {collection}: the API connection is closed")
        params = {"watch": "true", "allowWatchBookmarks": "true"}
        if since:
            params["resourceVersion"] = since
        if labels:
            params["labelSelector"] = labels
        try:
            async with self._api.call_api(
                "GET",
                version=version,
                namespace=self.namespace,
                url=collection,
                params=params,
                stream=True,
            ) as response:
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        if obj.get("code") == 410:
                            raise KubeGoneError(str(obj.get("message", "gone")), 410)
                        raise KubeError(
                            str(obj.get("message", "watch error")), int(obj.get("code") or 0)
                        )
                    yield str(event.get("type")), dict(obj)
        except kr8s.ServerError as exc:
            text, status = _message(exc)
            raise KubeError(f"watch {collection}: {text}", status) from exc
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise KubeError(f"watch {collection}: {exc}") from exc

    async def log(self, pod: str, *, lines: int, container: str = "") -> str:
        params = {"tailLines": str(lines)}
        if container:
            params["container"] = container
        try:
            response = await self._call("GET", "v1", f"pods/{pod}/log", params=params)
        except KubeError as exc:
            if exc.status in (400, 404):  # no pod, or its container has not started
                return ""
            raise
        return response.text

    async def review_token(self, token: str, audiences: tuple[str, ...]) -> Review:
        """Ask the API server who `token` is (TokenReview), for these audiences."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(audiences)},
        }
        response = await self._call(
            "POST", "authentication.k8s.io/v1", "tokenreviews", namespaced=False, body=body
        )
        status = response.json().get("status") or {}
        user = status.get("user") or {}
        return Review(
            authenticated=bool(status.get("authenticated")),
            username=str(user.get("username", "")),
            audiences=tuple(str(a) for a in status.get("audiences") or ()),
            error=str(status.get("error", "")),
        )


async def connect_kube(
    namespace: str, *, url: str = "", kubeconfig: str = "", call_seconds: float = 30.0
) -> KubeApi:
    """The API at `url` (no credentials), else the kubeconfig's, else in-cluster; each
    later call runs under `call_seconds` (the caller bounds this one)."""
    # Each KubeApi owns its client (kr8s's factory would hand out one shared, cached
    # instance, and one owner's aclose would close the others' session).
    options: dict[str, Any] = {"namespace": namespace}
    if url:
        # A URL alone: no kubeconfig is read (a path that cannot exist).
        options.update(url=url, kubeconfig="/dev/null/none")
    elif kubeconfig:
        options["kubeconfig"] = kubeconfig
    try:
        api = await kr8s.asyncio.Api(bypass_factory=True, **options)
    except Exception as exc:  # kr8s raises many kinds while it looks for a cluster
        raise KubeError(f"cannot reach the Kubernetes API: {exc}") from exc
    return KubeApi(api, namespace, timeout=call_seconds)
