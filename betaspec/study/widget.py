"""What a study widget is: a number, a title, a data schema and a `compute` function."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .context import StudyContext


@dataclass
class WidgetOutput:
    """What `compute` returns; the runner wraps it in the envelope (`envelope.py`)."""

    data: dict[str, Any]
    claims: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    token_counts: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)


@dataclass
class WidgetView:
    """How the report shows one widget result: a figure and the three-line annotation, all
    computed from the result JSON. `sources` lists the JSON paths (dotted, from the result's
    root, e.g. ``data.sources.smollm2.learned.heldout``) of every number the three lines print,
    so a test can change each one and see the text change."""

    figure: Any  # matplotlib.figure.Figure
    what: str     # line 1: what the widget shows
    trend: str    # line 2: the dominant trend, with the measured numbers
    outlier: str  # line 3: the outlier to watch, chosen by a stated rule
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Widget:
    """A study widget: `compute` measures (study), `view` presents a result (report)."""

    number: int
    title: str
    data_schema: dict[str, Any]
    compute: Callable[[StudyContext], WidgetOutput]
    view: Callable[[dict[str, Any]], WidgetView]


def claim(id: str, text: str, writeup: Any, measured: Any, verdict: str, evidence: str) -> dict[str, Any]:
    """One claim check: the write-up says `writeup`, this run measured `measured`, and a verdict
    from `envelope.VERDICTS`."""
    from .envelope import VERDICTS

    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {"id": id, "text": text, "writeup": writeup, "measured": measured, "verdict": verdict, "evidence": evidence}
