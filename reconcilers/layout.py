"""Where an agent's things live on the host; shared by every runtime and the controller.

```
<state>/agents/<name>/claude/   credentials (CLAUDE_CONFIG_DIR; /root/.claude in a container)
<state>/agents/<name>/state/    durable notes and history (HIVE_STATE; /state)
<state>/agents/hm1nd/agents/    the manager's clone of proposed.git (HIVE_AGENTS_DIR; /agents)
<state>/agents/<name>/home/     the agent's private HOME (process runtime)
<state>/agents/<name>/key/harness.key   the harness's credential (never inside a sandbox)
<state>/agents/<name>/page/page.sock    the agent page's socket (never inside a sandbox;
                                the dashboard proxies /agents/<name>/ to it)
<runtime>/agents/<name>/mcp.sock, <runtime>/manager/mcp.sock   (the dir is /run/hive)
```
Every agent's socket has a directory of its own, so a sandbox or container binds exactly
its own. Names are checked before they become paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gitstore.spec import MANAGER, check_name

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    state_dir: Path
    runtime_dir: Path

    def agent_dir(self, name: str) -> Path:
        return self.state_dir / "agents" / check_name(name)

    def claude_dir(self, name: str) -> Path:
        return self.agent_dir(name) / "claude"

    def notes_dir(self, name: str) -> Path:
        return self.agent_dir(name) / "state"

    def home_dir(self, name: str) -> Path:
        return self.agent_dir(name) / "home"

    def key_dir(self, name: str) -> Path:
        return self.agent_dir(name) / "key"

    def harness_key(self, name: str) -> Path:
        return self.key_dir(name) / "harness.key"

    def page_dir(self, name: str) -> Path:
        return self.agent_dir(name) / "page"

    def page_socket(self, name: str) -> Path:
        return self.page_dir(name) / "page.sock"

    def agents_clone(self) -> Path:
        return self.agent_dir(MANAGER) / "agents"

    def socket_dir(self, name: str) -> Path:
        if check_name(name) == MANAGER:
            return self.runtime_dir / "manager"
        return self.runtime_dir / "agents" / name

    def socket(self, name: str) -> Path:
        return self.socket_dir(name) / "mcp.sock"

    @property
    def host_socket(self) -> Path:
        return self.runtime_dir / "host.sock"
