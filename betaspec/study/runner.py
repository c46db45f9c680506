"""`betaspec study`: compute the widgets' measurements and write one JSON file per widget."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import torch

from .context import StudyBudget, StudyContext, study_code_digest
from .envelope import (
    SCHEMA_ID,
    SCHEMA_VERSION,
    load_result,
    package_versions,
    result_path,
    utc_now,
    validate,
    write_json_atomically,
)
from .widget import Widget


def all_widgets() -> dict[int, Widget]:
    """The eleven widgets, by number (imported lazily: each module may be heavy)."""
    from .widgets import WIDGETS

    return {w.number: w for w in WIDGETS}


def run_widget(widget: Widget, ctx: StudyContext, out_dir: Path) -> Path:
    """Compute one widget, validate its result and write it atomically; returns the path."""
    t0 = time.perf_counter()
    with torch.no_grad():
        out = widget.compute(ctx)
    result = {
        "schema": SCHEMA_ID,
        "version": SCHEMA_VERSION,
        "widget": widget.number,
        "title": widget.title,
        "quick": ctx.budget.quick,
        "created": utc_now(),
        "wall_time_s": round(time.perf_counter() - t0, 3),
        "versions": package_versions(),
        "settings": {**run_settings(ctx), **out.settings},
        "models": out.models,
        "token_counts": out.token_counts,
        "seeds": out.seeds or [ctx.seed],
        "data": out.data,
        "claims": out.claims,
    }
    validate(result, widget.data_schema)
    path = result_path(out_dir, widget.number)
    write_json_atomically(result, path)
    return path


def run_settings(ctx: StudyContext) -> dict[str, Any]:
    """What a result must share with this run to be reused: the budget, the seed and the code."""
    return {"budget": ctx.budget.as_dict(), "study_seed": ctx.seed, "study_code": study_code_digest()}


def is_current(path: Path, ctx: StudyContext) -> bool:
    """A result file can be reused when it exists, parses, has this schema version, was made with
    this run's budget, seed and code (`run_settings`), and covers the requested models that are
    available."""
    if not path.exists():
        return False
    try:
        res = load_result(path)
    except (ValueError, OSError):
        return False
    settings = res.get("settings", {})
    return (res.get("schema") == SCHEMA_ID and res.get("version") == SCHEMA_VERSION
            and res.get("quick") == ctx.budget.quick
            and all(settings.get(k) == v for k, v in run_settings(ctx).items())
            and set(ctx.models) <= set(res.get("models", [])) | {"synthetic"})


def run_study(out_dir: Path, quick: bool, widgets: Iterable[int] | None = None, models: Iterable[str] = ("smollm2",),
              force: bool = False, progress: bool = True, artifacts_dir: Path | None = None,
              seed: int = 0) -> list[Path]:
    """Run the requested widgets (default: all) and return the files written or reused."""
    from tqdm.auto import tqdm

    registry = all_widgets()
    numbers = sorted(widgets) if widgets is not None else sorted(registry)
    unknown = [n for n in numbers if n not in registry]
    if unknown:
        raise ValueError(f"widgets must be numbers 1–11, got {unknown}")
    ctx = StudyContext(budget=StudyBudget.for_mode(quick), requested_models=tuple(models), seed=seed,
                       progress=progress, **({"artifacts_dir": artifacts_dir} if artifacts_dir else {}))
    paths = []
    bar = tqdm(numbers, desc="study", disable=not progress)
    for n in bar:
        w = registry[n]
        bar.set_postfix_str(f"{n}: {w.title}")
        path = result_path(out_dir, n)
        if not force and is_current(path, ctx):
            paths.append(path)
            continue
        paths.append(run_widget(w, ctx, out_dir))
    return paths
