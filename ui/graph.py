"""Who talks to whom: a circular layout of agents with message counts on the edges, or,
for a bigger hive, an adjacency matrix.

Pure geometry, rendered as inline SVG by the template: nodes sit on a circle (the
operator first, at the top), each directed edge is a slightly bent quadratic curve so
that A→B and B→A do not overlap, and its label is the message count. Past a dozen nodes
a circle's labels collide and its edges cross into a hairball (22 nodes measured
unreadable), so the dashboard shows `talk_matrix` instead: a row per sender, a column
per recipient, each cell shaded by its count (the count on hover), which stays readable
at fifty agents and scales with the number of names, not of edges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Edge", "Graph", "Hit", "Matrix", "Node", "Row", "talk_graph", "talk_matrix"]


@dataclass(frozen=True)
class Node:
    name: str
    x: float
    y: float
    sent: int
    received: int


@dataclass(frozen=True)
class Edge:
    sender: str
    recipient: str
    count: int
    path: str
    label_x: float
    label_y: float
    width: float


@dataclass(frozen=True)
class Graph:
    size: int
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def talk_graph(
    agents: Iterable[str], counts: Iterable[Mapping[str, object]], size: int = 360
) -> Graph:
    pairs = {(str(c["sender"]), str(c["recipient"])): int(str(c["count"])) for c in counts}
    names = {n for pair in pairs for n in pair} | set(agents)
    ordered = (["operator"] if "operator" in names else []) + sorted(names - {"operator"})
    centre, radius = size / 2, size / 2 - 46
    pos: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(ordered):
        angle = -math.pi / 2 + 2 * math.pi * i / max(1, len(ordered))
        pos[name] = (centre + radius * math.cos(angle), centre + radius * math.sin(angle))
    top = max(pairs.values(), default=1)
    edges = []
    for (a, b), count in sorted(pairs.items()):
        if a == b or a not in pos or b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1.0
        # Shorten both ends so arrows stop at the node circles, bend to the right.
        ux, uy = dx / length, dy / length
        sx, sy, ex, ey = x1 + ux * 20, y1 + uy * 20, x2 - ux * 24, y2 - uy * 24
        bend = 0.18 * length
        cx, cy = (sx + ex) / 2 - uy * bend, (sy + ey) / 2 + ux * bend
        edges.append(
            Edge(
                sender=a,
                recipient=b,
                count=count,
                path=f"M{sx:.1f},{sy:.1f} Q{cx:.1f},{cy:.1f} {ex:.1f},{ey:.1f}",
                label_x=round(0.25 * sx + 0.5 * cx + 0.25 * ex, 1),
                label_y=round(0.25 * sy + 0.5 * cy + 0.25 * ey, 1),
                width=round(1.0 + 3.0 * count / top, 2),
            )
        )
    nodes = tuple(
        Node(
            name,
            round(x, 1),
            round(y, 1),
            sum(c for (s, _), c in pairs.items() if s == name),
            sum(c for (_, r), c in pairs.items() if r == name),
        )
        for name, (x, y) in pos.items()
    )
    return Graph(size, nodes, tuple(edges))


@dataclass(frozen=True)
class Hit:
    """A non-empty cell of a matrix row, after `gap` empty ones."""

    gap: int
    recipient: str
    count: int
    shade: float  # 0..1, on a log scale


@dataclass(frozen=True)
class Row:
    sender: str
    sent: int
    hits: tuple[Hit, ...]
    tail: int  # empty cells after the last hit


@dataclass(frozen=True)
class Matrix:
    """A row per sender, a column per recipient (the same `names`), sparse: a row is its
    non-empty cells and the gaps between them, so a template lays out fifty agents (2,601
    cells) in as many steps as there are talking pairs."""

    names: tuple[str, ...]
    rows: tuple[Row, ...]
    received: tuple[int, ...]
    total: int


def _ordered(names: set[str]) -> list[str]:
    return (["operator"] if "operator" in names else []) + sorted(names - {"operator"})


def talk_matrix(agents: Iterable[str], counts: Iterable[Mapping[str, object]]) -> Matrix:
    pairs = {(str(c["sender"]), str(c["recipient"])): int(str(c["count"])) for c in counts}
    names = _ordered({n for pair in pairs for n in pair} | set(agents) | {"operator"})
    column = {name: j for j, name in enumerate(names)}
    # A log scale: one busy pair must not wash every other cell out.
    scale = math.log1p(max(pairs.values(), default=1) or 1)
    by_sender: dict[str, list[tuple[int, str, int]]] = {}
    received = [0] * len(names)
    for (a, b), n in pairs.items():
        if n > 0:
            by_sender.setdefault(a, []).append((column[b], b, n))
            received[column[b]] += n
    rows = []
    for a in names:
        hits, at = [], 0
        for j, b, n in sorted(by_sender.get(a, [])):
            hits.append(Hit(j - at, b, n, round(math.log1p(n) / scale, 2)))
            at = j + 1
        rows.append(Row(a, sum(h.count for h in hits), tuple(hits), len(names) - at))
    return Matrix(tuple(names), tuple(rows), tuple(received), sum(pairs.values()))
