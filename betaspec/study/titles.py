"""The eleven widgets of the research write-up ("Explore the Data"), in its order and with its
titles. The registry's `widget` field and the report refer to them by number."""

from __future__ import annotations

WIDGET_TITLES: dict[int, str] = {
    1: "Moment geometry",
    2: "Isotropic floor and SRHT",
    3: "Learned L1-max rotation",
    4: "DC-mean centering mechanism",
    5: "Last-mile quadratic hardness",
    6: "Rank-r residual correction",
    7: "Cross-model PPL and memory",
    8: "Per-layer β profile",
    9: "Pareto frontier",
    10: "Front-token protection",
    11: "FFN weight β lift",
}


def widget_label(number: int | None) -> str:
    """`"widget 3 — Learned L1-max rotation"`, or an empty string when there is none."""
    if number is None:
        return ""
    return f"widget {number} — {WIDGET_TITLES[number]}"
