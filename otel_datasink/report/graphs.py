"""The report's drawings of structure, as SVG written here (no Vega: each is a few boxes and lines, and a page has
hundreds of run Gantts): a dataset's lineage graph and a pipeline run's Gantt.

Every name in them comes from spans and is escaped (:func:`html.escape`); links are the page's own anchors.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable, Sequence
from html import escape

from otel_datasink.report.charts import STATUS_COLORS
from otel_datasink.report.data import Row

LINEAGE_HOPS = 2
"""Datasets shown upstream and downstream of a dataset: those up to this many jobs away."""
COLUMN_NODES = 8
"""Nodes drawn in one column of a lineage graph; the others are counted under it."""

Node = tuple[str, str]
"""(``dataset`` | ``job``, name)."""

HEALTH_STYLES = {
    "fresh": ("#e8f5e9", "#2e7d32", "#1d2329"),
    "stale": ("#ffebee", "#c62828", "#1d2329"),
    "unknown": ("#f5f5f5", "#9e9e9e", "#1d2329"),
    "ok": ("#ffffff", "#2e7d32", "#1d2329"),
    "running": ("#ffffff", "#1565c0", "#1d2329"),
    "failing": ("#c62828", "#c62828", "#ffffff"),
}
"""A node's health as (fill, stroke, text): datasets fresh, stale or unknown (no update seen), jobs ok, running
or failing (a current failure streak)."""

STYLE = (
    "svg.lineage text,svg.gantt text{font-size:11px;fill:#1d2329}svg.lineage text{text-anchor:middle}"
    "svg.lineage rect{stroke-width:1.5px}svg.lineage .center rect{stroke-width:3px}"
    "svg.lineage path{fill:none;stroke:#90a4ae;stroke-width:1.2px}"
    "svg.lineage line{stroke:#cfd8dc}svg.gantt .label{text-anchor:end}svg.gantt .tick{font-size:10px;fill:#5f6b76}"
    "svg.gantt line{stroke:#eceff1}svg.gantt .running{stroke:#1565c0;stroke-dasharray:3 2;fill-opacity:.5}"
    + "".join(
        f"svg.lineage .{health} rect{{fill:{fill};stroke:{stroke}}}svg.lineage .{health} text{{fill:{text}}}"
        for health, (fill, stroke, text) in HEALTH_STYLES.items()
    )
    + "".join(f"svg.gantt rect.{status}{{fill:{color}}}" for status, color in STATUS_COLORS.items())
)
"""The graphs' looks, in the page's style sheet: a page has hundreds of them, and an attribute per mark would
weigh megabytes."""

_NODE_WIDTH, _NODE_HEIGHT, _COLUMN_GAP, _ROW_GAP, _LABEL_CHARS = 124, 26, 34, 10, 19


@dataclasses.dataclass(frozen=True)
class Lineage:
    """The edges of ``dataset_lineage`` as graphs: which jobs read and write each dataset."""

    readers: dict[str, set[str]]
    writers: dict[str, set[str]]
    inputs: dict[str, set[str]]
    outputs: dict[str, set[str]]

    @classmethod
    def of(cls, edges: Iterable[Row]) -> Lineage:
        """The graph of ``dataset_lineage`` rows."""
        graph = cls({}, {}, {}, {})
        for edge in edges:
            job, upstream, downstream = edge["job_name"], edge["upstream_dataset"], edge["downstream_dataset"]
            if upstream is not None:
                graph.readers.setdefault(upstream, set()).add(job)
                graph.inputs.setdefault(job, set()).add(upstream)
            if downstream is not None:
                graph.writers.setdefault(downstream, set()).add(job)
                graph.outputs.setdefault(job, set()).add(downstream)
        return graph

    def columns(self, dataset: str, hops: int = LINEAGE_HOPS) -> dict[int, list[Node]]:
        """The nodes around ``dataset`` by column: 0 is it, -1 the jobs that write it, -2 what they read, and so on
        upstream; +1 the jobs that read it, +2 what they write, and so on downstream, ``hops`` datasets each way.
        A node is placed once, in the column nearest the dataset (a cycle does not repeat it)."""
        placed: dict[Node, int] = {("dataset", dataset): 0}
        frontiers: dict[int, list[Node]] = {-1: [("dataset", dataset)], 1: [("dataset", dataset)]}
        for step in range(1, 2 * hops + 1):  # both ways a step at a time: a node goes to its nearest column
            for direction, frontier in frontiers.items():
                found = {node for kind, name in frontier for node in self._next(kind, name, direction)}
                frontiers[direction] = sorted(node for node in found if node not in placed)
                for node in frontiers[direction]:
                    placed[node] = direction * step
        columns: dict[int, list[Node]] = {}
        for node, column in placed.items():
            columns.setdefault(column, []).append(node)
        return {column: sorted(columns[column], key=lambda node: node[1]) for column in sorted(columns)}

    def _next(self, kind: str, name: str, direction: int) -> set[Node]:
        if kind == "dataset":
            return {("job", job) for job in (self.writers if direction < 0 else self.readers).get(name, ())}
        return {("dataset", found) for found in (self.inputs if direction < 0 else self.outputs).get(name, ())}

    def edges(self, nodes: set[Node]) -> list[tuple[Node, Node]]:
        """The edges among ``nodes``, each from what is read to the job, or from the job to what it wrote."""
        found = []
        for kind, job in sorted(nodes):  # from the jobs placed: a graph is a few nodes of a large lineage
            if kind != "job":
                continue
            found += [(("dataset", d), ("job", job)) for d in self.inputs.get(job, ()) if ("dataset", d) in nodes]
            found += [(("job", job), ("dataset", d)) for d in self.outputs.get(job, ()) if ("dataset", d) in nodes]
        return sorted(found)


def lineage_svg(
    graph: Lineage, dataset: str, health: Callable[[Node], str], link: Callable[[Node], str], hops: int = LINEAGE_HOPS
) -> str:
    """``dataset``'s lineage (:meth:`Lineage.columns`) as an SVG graph, left to right from upstream: each node a
    box coloured by ``health`` (:data:`HEALTH_STYLES`) linking to ``link`` (an anchor; none when empty), jobs with
    round ends, the dataset itself in a thick border; more than :data:`COLUMN_NODES` in a column are counted, not
    drawn."""
    columns = _untangled(graph, graph.columns(dataset, hops))
    first = min(columns)
    positions: dict[Node, tuple[float, float]] = {}
    parts: list[str] = []
    tallest = max(min(len(nodes), COLUMN_NODES + 1) for nodes in columns.values())
    height = tallest * (_NODE_HEIGHT + _ROW_GAP) + _ROW_GAP
    for column, nodes in columns.items():
        x = (column - first) * (_NODE_WIDTH + _COLUMN_GAP) + 4
        shown = nodes[:COLUMN_NODES]
        top = (height - len(shown) * (_NODE_HEIGHT + _ROW_GAP) + _ROW_GAP) / 2
        for index, node in enumerate(shown):
            positions[node] = (x, top + index * (_NODE_HEIGHT + _ROW_GAP))
        if len(nodes) > len(shown):
            parts.append(f'<text x="{x + _NODE_WIDTH / 2:.0f}" y="{height - 2}">+{len(nodes) - len(shown)} more</text>')
    lines = [_edge(positions[a], positions[b]) for a, b in graph.edges(set(positions)) if a != b]
    boxes = [_node(node, positions[node], health(node), link(node), node == ("dataset", dataset)) for node in positions]
    width = (max(columns) - first + 1) * (_NODE_WIDTH + _COLUMN_GAP) - _COLUMN_GAP + 8
    return (
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(lines)}{"".join(boxes)}{"".join(parts)}</svg>'
    )


def _untangled(graph: Lineage, columns: dict[int, list[Node]]) -> dict[int, list[Node]]:
    """``columns`` with each column's nodes in the mean order of their neighbours in the column nearer the dataset
    (then by name): fewer edges cross (the barycentre heuristic, one sweep outwards)."""
    placed = {node for nodes in columns.values() for node in nodes}
    neighbours: dict[Node, set[Node]] = {}
    for a, b in graph.edges(placed):
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    ordered = dict(columns)
    for column in sorted(columns, key=abs):
        inner = ordered.get(column - 1 if column > 0 else column + 1)
        if column == 0 or inner is None:
            continue
        rank = {node: index for index, node in enumerate(inner)}
        ordered[column] = sorted(
            columns[column], key=lambda node: (_mean_rank(neighbours.get(node, ()), rank), node[1])
        )
    return dict(sorted(ordered.items()))


def _mean_rank(nodes: Iterable[Node], rank: dict[Node, int]) -> float:
    found = [rank[node] for node in nodes if node in rank]
    return sum(found) / len(found) if found else float(len(rank))


def _edge(start: tuple[float, float], end: tuple[float, float]) -> str:
    x1, y1 = start[0] + _NODE_WIDTH, start[1] + _NODE_HEIGHT / 2
    x2, y2 = end[0], end[1] + _NODE_HEIGHT / 2
    if x2 <= x1:  # against the flow (a node placed nearer the dataset on the other side): a plain line
        return f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}"/>'
    middle = (x1 + x2) / 2
    # The arrowhead is the path's own end (an open chevron), not a <marker>: a marker needs an id, and a page of
    # many graphs would repeat it.
    if y1 == y2:
        line = f"M{x1:.0f},{y1:.0f}H{x2:.0f}"
    else:
        line = f"M{x1:.0f},{y1:.0f}C{middle:.0f},{y1:.0f} {middle:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
    return f'<path d="{line}l-6,-4m6,4l-6,4"/>'


def _node(node: Node, at: tuple[float, float], health: str, href: str, center: bool) -> str:
    kind, name = node
    label = name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"
    title = f"<title>{escape(name)}</title>" if label != name else ""  # the whole name where it is cut
    radius = _NODE_HEIGHT // 2 if kind == "job" else 3
    tag, link = ("a", f'href="{escape(href)}" ') if href else ("g", "")  # no page of its own in the file
    return (
        f'<{tag} {link}class="node {kind} {health}{" center" if center else ""}" '
        f'data-node="{escape(name)}">{title}<rect x="{at[0]:.0f}" y="{at[1]:.0f}" width="{_NODE_WIDTH}" '
        f'height="{_NODE_HEIGHT}" rx="{radius}"/><text x="{at[0] + _NODE_WIDTH / 2:.0f}" '
        f'y="{at[1] + _NODE_HEIGHT / 2 + 4:.0f}">{escape(label)}</text></{tag}>'
    )


# --- a pipeline run's Gantt ---------------------------------------------------------------------------------------

_GANTT_WIDTH, _GANTT_LABEL, _GANTT_ROW, _GANTT_AXIS = 1000, 190, 18, 22


def gantt_svg(children: Sequence[Row], now: datetime.datetime, link: Callable[[str], str]) -> str:
    """A pipeline run's child runs as bars from their start to their end (``now`` for a run still going, dashed),
    coloured by status, one row each in order of start, labelled with the job (linking to ``link`` of its name,
    unless empty) and an axis of UTC times."""
    timed = [child for child in children if child["start_time"] is not None]
    if not timed:
        return ""
    starts = [child["start_time"] for child in timed]
    ends = [child["end_time"] or now for child in timed]
    first, last = min(starts), max(max(ends), min(starts) + datetime.timedelta(seconds=1))
    span = (last - first).total_seconds()
    plot = _GANTT_WIDTH - _GANTT_LABEL - 10

    def x(at: datetime.datetime) -> float:
        return _GANTT_LABEL + plot * (at - first).total_seconds() / span

    rows = []
    for index, (child, end) in enumerate(zip(timed, ends, strict=True)):
        y = _GANTT_AXIS + index * _GANTT_ROW
        left, right = x(child["start_time"]), max(x(end), x(child["start_time"]) + 3)
        status = str(child["status"])
        css = f"{status} running" if child["end_time"] is None else status
        minutes = f"{child['duration_ms'] / 60000:.1f} min" if child["duration_ms"] is not None else "running"
        label = child["job_name"] if len(child["job_name"]) <= 30 else child["job_name"][:29] + "…"
        title = f"attempt {child['attempt']}: {status}, {minutes}"
        text = f'<text class="label" x="{_GANTT_LABEL - 6}" y="{y + 12}">{escape(label)}</text>'
        href = link(child["job_name"])
        rows.append(
            f"<g><title>{escape(title)}</title>"
            + (f'<a href="{escape(href)}">{text}</a>' if href else text)
            + f'<rect class="{escape(css)}" x="{left:.0f}" y="{y + 2}" '
            f'width="{right - left:.0f}" height="{_GANTT_ROW - 5}" rx="2"/></g>'
        )
    height = _GANTT_AXIS + len(timed) * _GANTT_ROW + 4
    ticks = []
    for step in range(5):
        at = first + datetime.timedelta(seconds=span * step / 4)
        anchor = ' style="text-anchor:end"' if step == 4 else ' style="text-anchor:middle"'
        ticks.append(
            f'<line x1="{x(at):.0f}" y1="{_GANTT_AXIS - 4}" x2="{x(at):.0f}" y2="{height}"/>'
            f'<text class="tick" x="{x(at):.0f}" y="12"{anchor}>'
            f"{at.astimezone(datetime.timezone.utc).strftime('%H:%M:%S')}</text>"
        )
    return (
        f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{_GANTT_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_GANTT_WIDTH} {height}">{"".join(ticks)}{"".join(rows)}</svg>'
    )
