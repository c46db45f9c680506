"""Helpers shared by the key-statistics widgets (1–6): which key views to measure, summaries of
per-head numbers, codec-quality tables, JSON-safe floats, and the annotation builder that records
the JSON path of every number a view prints.

Every number an annotation prints goes through `Annotation.num` (or `.int`), which reads it from
the result dict by its dotted path and records that path in `sources` — so no view can print a
number that does not trace to the JSON.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Sequence

from ..context import SYNTHETIC, StudyContext
from ..jsonpath import get_path

BETA_FMT = ".3f"
CONFIGS = (("identity", False), ("identity", True), ("srht", False), ("srht", True), ("learned", False),
           ("learned", True))
CONFIG_LABEL = {("identity", False): "raw", ("identity", True): "raw+centred", ("srht", False): "SRHT",
                ("srht", True): "SRHT+centred", ("learned", False): "learned", ("learned", True): "learned+centred"}
SOURCE_LABEL = {"smollm2": "SmolLM2-135M", "gemma3": "Gemma-3-270m", SYNTHETIC: "synthetic"}
VIEW_LABEL = {"post_rope": "post-RoPE", "pre_rope": "pre-RoPE"}


def centre_key(center: bool) -> str:
    return "centred" if center else "raw"


def view_configs(ctx: StudyContext, source: str) -> dict[str, list[tuple[str, bool]]]:
    """{view: [(rotation, centre), …]} measured for `source` (widget 3's table; 4–6 reuse its fits).
    Post-RoPE (what the cache stores) always, with every configuration; pre-RoPE (what the write-up
    probably measured) too for real models in full mode (quick mode skips it: one more key
    collection and two more learned fits per model)."""
    out = {"post_rope": list(CONFIGS)}
    if source != SYNTHETIC and not ctx.budget.quick:
        out["pre_rope"] = list(CONFIGS)
    return out


def preferred(sources: Iterable[str]) -> list[str]:
    """The real models among `sources`, or all of them when there is none (synthetic-only runs):
    outlier rules look at real keys first."""
    sources = list(sources)
    return [s for s in sources if s != SYNTHETIC] or sources


def where(source: str, view: str | None = None) -> str:
    """'SmolLM2-135M post-RoPE', or 'synthetic' (synthetic keys have no RoPE view)."""
    name = SOURCE_LABEL.get(source, source)
    return name if source == SYNTHETIC or view is None else f"{name} {VIEW_LABEL[view]}"


def real_sources(ctx: StudyContext) -> list[str]:
    return [s for s in ctx.key_sources if s != SYNTHETIC]


def fnum(x: float) -> float:
    """A finite float for JSON (NaN/inf are bugs upstream: fail loudly)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite number in a study result: {x!r}")
    return x


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean, as a finite float for JSON."""
    v = list(values)
    return fnum(sum(v) / len(v))


def summary(values: Iterable[float], keep: bool = True) -> dict[str, Any]:
    """mean / median / min / max / q10 / q90 (and the values themselves when `keep`)."""
    v = [fnum(x) for x in values]
    if not v:
        raise ValueError("summary of no values")
    s = sorted(v)

    def q(p: float) -> float:
        pos = p * (len(s) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    out: dict[str, Any] = {"mean": statistics.fmean(v), "median": q(0.5), "min": s[0], "max": s[-1],
                           "q10": q(0.1), "q90": q(0.9)}
    if keep:
        out["per_head"] = v
    return out


SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mean", "median", "min", "max", "q10", "q90"],
    "properties": {k: {"type": "number"} for k in ("mean", "median", "min", "max", "q10", "q90")}
    | {"per_head": {"type": "array", "items": {"type": "number"}}},
}


def num_array(min_items: int = 0) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "number"}, "minItems": min_items}


def obj(required: Sequence[str], properties: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties or {}, **extra}


def flat(table: list[list[Any]]) -> list[Any]:
    """[layer][head] → all layers × heads, layer-major."""
    return [x for row in table for x in row]


class Annotation:
    """Collects the JSON paths of the numbers a view prints."""

    def __init__(self, result: dict[str, Any]):
        self.result = result
        self.sources: list[str] = []

    def value(self, path: str) -> Any:
        v = get_path(self.result, path)
        if path not in self.sources:
            self.sources.append(path)
        return v

    def num(self, path: str, fmt: str = BETA_FMT) -> str:
        return format(float(self.value(path)), fmt)

    def int(self, path: str) -> str:
        return format(self.value(path), "g")

    def pct(self, path: str, digits: int = 1) -> str:
        return f"{100.0 * float(self.value(path)):.{digits}f}%"

    def sci(self, path: str) -> str:
        return f"{float(self.value(path)):.1e}"


def new_figure(ncols: int, nrows: int = 1, width: float = 5.2, height: float = 4.0):
    """A matplotlib Figure (Agg canvas, no pyplot state) with a grid of axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes
