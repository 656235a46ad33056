"""Size and shape limits on what a proposed tree may declare (checked by every plan, in
`gitstore.shape`).

Whatever a push can grow without bound is bounded here, so that one branch can neither
make a plan slow nor land a tree applied `main` cannot check out: the bytes of
`agent.toml` and `prompt.md`, an agent's description, the files and bytes under
`agents/<name>/`, the depth of any path, and the number of agents. A branch over a limit
gets a plan error naming the limit (and so cannot be approved); nothing is truncated.
No pygit2 here, so settings (and the admin client that reads them) import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    agent_toml_bytes: int = 64 * 1024
    prompt_bytes: int = 256 * 1024
    description_chars: int = 2000
    agent_files: int = 100
    agent_bytes: int = 2 * 1024 * 1024
    # Components of any path in the tree, `agents/<name>/agent.toml` being 3.
    tree_depth: int = 16
    agents: int = 1000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"limit {f.name} must be a whole number >= 1, not {value!r}")
