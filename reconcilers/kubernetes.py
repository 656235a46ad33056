"""The kubernetes runtime: every agent a StatefulSet of one replica in hive-c0re's namespace.

The objects are in `reconcilers.kubeobjects`; the API is reached only through
`reconcilers.kubeapi` (kr8s). The verbs map onto the Kubernetes API so:

- `create`: the agent's ServiceAccount, claim and key Secret (each kept if it exists),
  then its StatefulSet at replicas 0 (created stopped, as the process runtime's are);
- `update`: the pod template replaced by a merge patch that carries the resourceVersion
  read just before, so a concurrent writer makes it 409 and it is read and tried again
  (at most `CONFLICT_TRIES` times); the new annotations roll the pod;
- `start` / `stop` (and so holds): replicas 1 / 0; `start` of a crash-looping agent also
  deletes its pod, so the StatefulSet makes a fresh one at once instead of after the
  kubelet's back-off;
- `destroy`: the StatefulSet, the Secret and the ServiceAccount; the claim stays unless
  `purge` (`hive destroy NAME --purge`).

`observe` reads the StatefulSet (rev and harness version from the template's
annotations, replicas) and the pod: no StatefulSet is MISSING, replicas 0 STOPPED, a pod
whose harness container is waiting on a crash (`CrashLoopBackOff`, `Error`, ...) or has
restarted since hive-c0re last started it is CRASHED, with the pod's reason and last
exit as the message; anything else RUNNING (a pod still being scheduled included). The
crash policy of the agents reconciler then counts crashes as it does for processes, and
after `crash_limit` of them within the window the agent is Stalled with that message.

Crashes are seen through a watch on the agents' pods (`serve`): a container that
restarts or waits on a crash queues its agent (`exits()`). The watch resumes from the
last resourceVersion it saw when the server ends the stream, lists afresh after a 410,
and backs off while the API cannot be reached.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gitstore.spec import check_name
from reconcilers import kubeobjects as objects
from reconcilers.backoff import Backoff
from reconcilers.kubeapi import KubeApi, KubeConflictError, KubeError, KubeGoneError, connect_kube
from reconcilers.kubesettings import KubeSettings
from reconcilers.layout import Layout
from reconcilers.proc import mint_key
from reconcilers.runtime import AgentBuild, ContainerError, ContainerState, Observed

__all__ = ["CONFLICT_TRIES", "CRASH_REASONS", "KubernetesRuntime"]

log = logging.getLogger(__name__)

CONFLICT_TRIES = 5
CRASH_REASONS = frozenset(
    {"CrashLoopBackOff", "Error", "OOMKilled", "ContainerCannotRun", "RunContainerError"}
)
_APPS = "apps/v1"


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == objects.CONTAINER:
            return dict(status)
    return {}


def _crash(status: dict[str, Any]) -> str:
    """Why the harness container is down, or "" while it is not."""
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    if waiting.get("reason") in CRASH_REASONS or terminated:
        reason = waiting.get("reason") or terminated.get("reason") or "Terminated"
        text = f"{reason}: {waiting.get('message') or terminated.get('message') or ''}".strip()
        if last:
            text += f"; last exit {last.get('reason', '?')} (code {last.get('exitCode', '?')})"
        return f"{text}; {status.get('restartCount', 0)} restarts"
    return ""


class KubernetesRuntime:
    name = "kubernetes"
    sandbox = "pod"

    def __init__(
        self,
        settings: KubeSettings,
        layout: Layout,
        *,
        api: KubeApi | None = None,
        watch_backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.layout = layout
        self._api = api
        self.watch_backoff = watch_backoff or Backoff(0.5, 30.0)
        # The restarts of each agent's pod that hive-c0re has seen to (pod uid, count).
        self._acked: dict[str, tuple[str, int]] = {}
        self._seen: dict[str, tuple[str, int, bool]] = {}
        self.watches = 0  # how many times the pod watch was (re)opened
        self._exits_send: MemoryObjectSendStream[str]
        self._exits_receive: MemoryObjectReceiveStream[str]
        self._exits_send, self._exits_receive = anyio.create_memory_object_stream[str](1000)

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            raise ContainerError("the Kubernetes API is not connected yet")
        return self._api

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, then watch the agents' pods for crashes until cancelled."""
        s = self.settings
        if self._api is None:
            with anyio.fail_after(s.timeout):
                self._api = await connect_kube(
                    s.namespace, url=s.url, kubeconfig=s.kubeconfig, call_seconds=s.timeout
                )
        log.info("kubernetes runtime: namespace %s, image %s", s.namespace, s.image)
        task_status.started()
        try:
            await self._watch_pods()
        finally:
            self._exits_send.close()
            self._exits_receive.close()
            with anyio.CancelScope(shield=True):
                await self.api.aclose()

    async def _watch_pods(self) -> None:
        since = ""
        failures = 0
        while True:
            try:
                if not since:
                    pods, since = await self.api.list("v1", "pods", labels=objects.MANAGED_SELECTOR)
                    for pod in pods:
                        self._look(pod)
                self.watches += 1
                async for kind, pod in self.api.watch(
                    "v1", "pods", since=since, labels=objects.MANAGED_SELECTOR
                ):
                    failures = 0
                    version = (pod.get("metadata") or {}).get("resourceVersion")
                    if version:
                        since = str(version)
                    if kind != "BOOKMARK":
                        self._look(pod, deleted=kind == "DELETED")
                log.debug("pod watch ended at resourceVersion %s; resuming", since)
            except KubeGoneError:
                log.info("pod watch: resourceVersion %s is gone; listing again", since)
                since = ""
            except KubeError as exc:
                failures += 1
                delay = self.watch_backoff.delay(failures)
                log.warning("pod watch failed (%s); retrying in %.1fs", exc, delay)
                await anyio.sleep(delay)

    def _look(self, pod: dict[str, Any], *, deleted: bool = False) -> None:
        """Queue the pod's agent when its harness restarted or waits on a crash."""
        meta = pod.get("metadata") or {}
        name = (meta.get("labels") or {}).get(objects.AGENT_LABEL)
        if not name or deleted:
            return
        status = _container(pod)
        seen = (str(meta.get("uid", "")), int(status.get("restartCount", 0)), bool(_crash(status)))
        before = self._seen.get(name)
        self._seen[name] = seen
        if before == seen:
            return
        restarted = before is not None and before[0] == seen[0] and seen[1] > before[1]
        if seen[2] or restarted:
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                self._exits_send.send_nowait(name)

    async def exits(self) -> AsyncIterator[str]:
        async for name in self._exits_receive:
            yield name

    def name_problem(self, name: str) -> str | None:
        return None

    # --- reading -------------------------------------------------------------------

    async def names(self) -> list[str]:
        try:
            sets, _ = await self.api.list(_APPS, "statefulsets", labels=objects.MANAGED_SELECTOR)
        except KubeError as exc:
            raise ContainerError(str(exc)) from exc
        found = {
            ((s.get("metadata") or {}).get("labels") or {}).get(objects.AGENT_LABEL) for s in sets
        }
        return sorted(n for n in found if isinstance(n, str) and n)

    async def observe(self, name: str) -> Observed:
        check_name(name)
        try:
            sts = await self.api.get(_APPS, f"statefulsets/{objects.workload_name(name)}")
            if sts is None:
                return Observed(name, ContainerState.MISSING)
            pod = await self.api.get("v1", f"pods/{objects.pod_name(name)}")
        except KubeError as exc:
            raise ContainerError(str(exc)) from exc
        annotations = sts["spec"]["template"].get("metadata", {}).get("annotations", {})
        rev = annotations.get(objects.ANNOTATION_REV) or None
        version = annotations.get(objects.ANNOTATION_HARNESS) or None
        if int(sts["spec"].get("replicas") or 0) == 0:
            return Observed(name, ContainerState.STOPPED, rev, version)
        if pod is None:
            return Observed(name, ContainerState.RUNNING, rev, version, message="pod not made yet")
        status = _container(pod)
        uid = str(pod["metadata"].get("uid", ""))
        restarts = int(status.get("restartCount", 0))
        acked = self._acked.setdefault(name, (uid, restarts))
        if acked[0] != uid:  # a new pod: its restarts count from zero
            acked = self._acked[name] = (uid, 0)
        crash = _crash(status)
        if crash or restarts > acked[1]:
            last = (status.get("lastState") or {}).get("terminated") or {}
            message = crash or (
                f"restarted {restarts - acked[1]} time(s); last exit "
                f"{last.get('reason', '?')} (code {last.get('exitCode', '?')})"
            )
            return Observed(name, ContainerState.CRASHED, rev, version, message=message)
        phase = (pod.get("status") or {}).get("phase", "")
        return Observed(
            name, ContainerState.RUNNING, rev, version, message="" if phase == "Running" else phase
        )

    async def logs(self, name: str, lines: int = 200) -> list[str]:
        check_name(name)
        try:
            text = await self.api.log(
                objects.pod_name(name), lines=lines, container=objects.CONTAINER
            )
        except KubeError as exc:
            return [f"cannot read the pod's log: {exc}"]
        return text.splitlines()[-lines:]

    # --- acting --------------------------------------------------------------------

    def _mint(self, name: str) -> str:
        path = self.layout.harness_key(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return mint_key(path)

    async def create(self, build: AgentBuild) -> None:
        s = self.settings
        key = await anyio.to_thread.run_sync(self._mint, build.name)
        try:
            await self.api.ensure(
                "v1", "serviceaccounts", objects.service_account(build.name, s.namespace)
            )
            await self.api.ensure("v1", "persistentvolumeclaims", objects.claim(build.name, s))
            await self._put_key(build.name, key)
            try:
                await self.api.create(_APPS, "statefulsets", objects.statefulset(build, s, key))
            except KubeConflictError:
                await self._patch_template(build, key)  # made by an earlier, broken create
        except KubeError as exc:
            raise ContainerError(str(exc)) from exc

    async def _put_key(self, name: str, key: str) -> None:
        secret = objects.key_secret(name, self.settings.namespace, key)
        try:
            await self.api.create("v1", "secrets", secret)
        except KubeConflictError:
            await self.api.patch(
                "v1", f"secrets/{secret['metadata']['name']}", {"stringData": {"key": key}}
            )

    async def update(self, build: AgentBuild) -> None:
        key = await anyio.to_thread.run_sync(self._mint, build.name)
        try:
            await self._put_key(build.name, key)
            await self._patch_template(build, key)
        except KubeError as exc:
            raise ContainerError(str(exc)) from exc

    async def _patch_template(self, build: AgentBuild, key: str) -> None:
        url = f"statefulsets/{objects.workload_name(build.name)}"
        template = objects.template(build, self.settings, key)
        for attempt in range(1, CONFLICT_TRIES + 1):
            current = await self.api.get(_APPS, url)
            if current is None:
                raise KubeError(f"{url} is gone")
            version = current["metadata"].get("resourceVersion")
            try:
                await self.api.patch(
                    _APPS,
                    url,
                    {"metadata": {"resourceVersion": version}, "spec": {"template": template}},
                )
                return
            except KubeConflictError:
                log.info("%s changed meanwhile (try %d); reading it again", url, attempt)
        raise KubeConflictError(f"{url} kept changing: {CONFLICT_TRIES} updates conflicted", 409)

    async def _scale(self, name: str, replicas: int) -> None:
        url = f"statefulsets/{objects.workload_name(name)}"
        await self.api.patch(_APPS, url, {"spec": {"replicas": replicas}})

    async def start(self, name: str) -> None:
        obs = await self.observe(name)
        if obs.state is ContainerState.MISSING:
            raise ContainerError(f"agent {name} is not created")
        try:
            if obs.state is ContainerState.CRASHED:
                pod = await self.api.get("v1", f"pods/{objects.pod_name(name)}")
                if pod is not None:
                    status = _container(pod)
                    uid = str(pod["metadata"].get("uid", ""))
                    self._acked[name] = (uid, int(status.get("restartCount", 0)))
                    if _crash(status):
                        await self.api.delete("v1", f"pods/{objects.pod_name(name)}")
            if obs.state is not ContainerState.RUNNING:
                await self._scale(name, 1)
        except KubeError as exc:
            raise ContainerError(str(exc)) from exc

    async def stop(self, name: str) -> None:
        check_name(name)
        try:
            if await self.api.get(_APPS, f"statefulsets/{objects.workload_name(name)}"):
                await self._scale(name, 0)
        except KubeError as exc:
            raise ContainerError(str(exc)) from exc

    async def destroy(self, name: str) -> None:
        check_name(name)
        base = objects.workload_name(name)
        try:
            await self.api.delete(_APPS, f"statefulsets/{base}")
            await self.api.delete("v1", f"secrets/{base}-key")
            await self.api.delete("v1", f"serviceaccounts/{base}")
        except KubeError as exc:
            raise ContainerError(str(exc)) from exc
        self._acked.pop(name, None)
        self.layout.harness_key(name).unlink(missing_ok=True)

    async def purge(self, name: str) -> bool:
        """Delete the agent's claim (its notes, history and credentials); False if none."""
        check_name(name)
        try:
            return await self.api.delete(
                "v1", f"persistentvolumeclaims/{objects.workload_name(name)}-state"
            )
        except KubeError as exc:
            raise ContainerError(str(exc)) from exc
