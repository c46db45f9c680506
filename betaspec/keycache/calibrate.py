"""Calibrating the 1-bit key cache of a real model: keys → per-layer codecs → artifact + β table.

For every layer and kv head, the codec (`impl.calibration.fit_codec`) is fitted on the *train*
keys only; β, γ_r and β_eff are then measured on train, held-out (same kind of text, other
documents) and out-of-domain keys, so an over-fitted rotation shows up as a train/held-out gap
instead of a good-looking number. The first ``protect`` positions of every window are left out:
the cache keeps those tokens exactly and never codes them.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from impl.cache.codecs.transform import COEF_BITS, MAX_CODE_BITS, SCALE_RULES
from impl.calibration.fit import LEVEL_SOURCES, OBJECTIVES, ROTATIONS, fit_codec
from impl.calibration.quality import codec_quality
from impl.multilevel import check_bits

from ..data.catalog import model_spec
from ..data.corpus import SPLIT_NAMES
from ..data.load import load_model
from ..data.models import KEY_VIEWS, collect_keys, query_second_moments, text_windows
from .artifacts import Calibration, save_calibration


@dataclass(frozen=True)
class CalibrationSettings:
    """Everything that determines a calibration. Token budgets count keys per head per split."""

    model: str = "smollm2"
    view: str = "post_rope"
    rotation: str = "learned"
    center: bool = True
    bits: int = 1                    # bits per coordinate of the code (1–4)
    levels: str = "gaussian"         # b > 1: Gaussian Lloyd–Max levels or levels fitted to the train keys
    objective: str | None = None     # None: "l1" for b = 1, "distortion" for b > 1
    channel_scale: bool = False      # per-channel scale after the rotation
    rank: int | None = None          # None: d/8
    coef_bits: int = 16              # rank-r coefficients: float16 (16) or int8 / int4 with a per-token scale
    scale_rule: str = "ls"           # per-token scale: least squares, unbiased, or query-weighted (E[q qᵀ] of train queries)
    train_tokens: int = 8192
    heldout_tokens: int = 4096
    ood_tokens: int = 4096
    window: int = 512
    protect: int = 0
    steps: int = 200
    lr: float = 1e-2
    batch_size: int = 4096
    seed: int = 0
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        model_spec(self.model)
        if self.view not in KEY_VIEWS:
            raise ValueError(f"view must be one of {KEY_VIEWS}, got {self.view!r}")
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {self.rotation!r}")
        for name in ("train_tokens", "heldout_tokens", "ood_tokens", "window", "steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0 <= self.protect < self.window:
            raise ValueError(f"protect must be in [0, window = {self.window}), got {self.protect}")
        d = model_spec(self.model).head_dim
        if self.rank is not None and not 0 <= self.rank <= d:
            raise ValueError(f"rank must be in [0, d = {d}], got {self.rank}")
        check_bits(self.bits, "bits", maximum=MAX_CODE_BITS)
        for name, allowed in (("levels", LEVEL_SOURCES), ("objective", (None, *OBJECTIVES)),
                              ("coef_bits", COEF_BITS), ("scale_rule", SCALE_RULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")

    @property
    def resolved_rank(self) -> int:
        return model_spec(self.model).head_dim // 8 if self.rank is None else self.rank

    def windows_for(self, tokens: int) -> int:
        """Windows needed so that at least `tokens` coded keys are collected per head."""
        per_window = self.window - self.protect
        return -(-tokens // per_window)

    def default_stem(self) -> str:
        center = "centred" if self.center else "raw"
        code = f"b{self.bits}" + ("-fitted" if self.levels == "fitted" and self.bits > 1 else "") + (
            "-cs" if self.channel_scale else "") + (f"-{self.objective}" if self.objective is not None else "") + (
            "" if self.scale_rule == "ls" else f"-{self.scale_rule}")
        coef = "" if self.coef_bits == 16 else f"i{self.coef_bits}"
        # optimisation settings and a layer subset change the fit too: named when not the default
        extra = "".join(f"-{tag}{getattr(self, name):g}" for name, tag in
                        (("steps", "st"), ("lr", "lr"), ("batch_size", "bs"), ("window", "w"))
                        if getattr(self, name) != getattr(CalibrationSettings, name))
        if self.layers is not None:
            extra += "-L" + "_".join(str(i) for i in self.layers)
        return (f"{self.model}-{self.view}-{self.rotation}-{center}-{code}-r{self.resolved_rank}{coef}"
                f"-p{self.protect}-t{self.train_tokens}-s{self.seed}{extra}")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rank"] = self.resolved_rank
        out["layers"] = list(self.layers) if self.layers is not None else None
        return out


@dataclass
class SplitKeys:
    """Keys of one model for each split, (L, H, T, d), the layer indices they belong to, and — for
    the query-weighted scale — `E[q qᵀ]` of the train queries, (L, H, d, d)."""

    layers: list[int]
    keys: dict[str, torch.Tensor] = field(default_factory=dict)
    query_moments: torch.Tensor | None = None


def collect_split_keys(model, tokenizer, s: CalibrationSettings, progress: bool = True) -> SplitKeys:
    """Run the model on train / held-out / OOD windows and keep the keys the cache would code."""
    layers = list(s.layers) if s.layers is not None else list(range(model_spec(s.model).num_layers))
    out = SplitKeys(layers=layers)
    budgets = {"train": s.train_tokens, "heldout": s.heldout_tokens, "ood": s.ood_tokens}
    for split in SPLIT_NAMES:
        win = text_windows(s.model, tokenizer, split, s.windows_for(budgets[split]), s.window, progress=progress)
        keys = collect_keys(model, win, view=s.view, layers=layers, progress=progress, skip_first=s.protect)
        out.keys[split] = keys[:, :, : budgets[split]].contiguous()
        if split == "train" and s.scale_rule == "query":
            out.query_moments = query_second_moments(model, win, progress=progress)[layers]
    return out


def calibrate_keys(keys: SplitKeys, s: CalibrationSettings, progress: bool = True) -> Calibration:
    """Fit one codec per layer on the train keys; measure it on every split."""
    from tqdm.auto import tqdm

    codecs, table, curves, seconds = [], [], [], []
    for row, layer in enumerate(tqdm(keys.layers, desc=f"calibrate {s.model} ({s.rotation})", disable=not progress)):
        t0 = time.perf_counter()
        codec, fits = fit_codec(
            keys.keys["train"][row], rotation=s.rotation, center=s.center, bits=s.bits, levels=s.levels,
            objective=s.objective, channel_scale=s.channel_scale, rank=s.resolved_rank, coef_bits=s.coef_bits,
            scale_rule=s.scale_rule, steps=s.steps, lr=s.lr, batch_size=s.batch_size, seed=s.seed + layer,
            heldout=keys.keys["heldout"][row],
            query_moment=None if keys.query_moments is None else keys.query_moments[row],
        )
        seconds.append(time.perf_counter() - t0)
        quality = {split: codec_quality(codec, keys.keys[split][row]) for split in SPLIT_NAMES}
        codecs.append(codec)
        table.append([{split: quality[split][h].as_dict() for split in SPLIT_NAMES} for h in range(codec.heads)])
        curves.append([{"train": f.train_curve, "heldout": f.heldout_curve} for f in fits])
    return Calibration(
        model=s.model, view=s.view, settings=s.as_dict(), codecs=codecs, table=table, curves=curves,
        extra={"layers": keys.layers, "fit_seconds": seconds,
               "tokens": {split: int(keys.keys[split].shape[2]) for split in SPLIT_NAMES}},
    )


def calibrate(s: CalibrationSettings, out: Path | None = None, progress: bool = True,
              model_and_tokenizer=None) -> tuple[Calibration, Path]:
    """Load the model, collect keys, fit, and save the artifact (atomically)."""
    model, tok = model_and_tokenizer or load_model(s.model, progress=progress)
    with torch.no_grad():
        keys = collect_split_keys(model, tok, s, progress=progress)
    calib = calibrate_keys(keys, s, progress=progress)
    stem = out if out is not None else Path("artifacts") / s.default_stem()
    _, meta = save_calibration(calib, stem)
    return calib, meta


def summary_rows(calib: Calibration) -> list[dict[str, Any]]:
    """Per layer (heads averaged): β, γ_r and β_eff on each split, and the train/held-out gap."""
    rows = []
    layers = calib.extra.get("layers", list(range(calib.layers)))
    for layer, heads in zip(layers, calib.table):
        row: dict[str, Any] = {"layer": layer}
        for split in SPLIT_NAMES:
            for key in ("beta", "gamma", "beta_eff"):
                row[f"{key}_{split}"] = sum(h[split][key] for h in heads) / len(heads)
        row["gap"] = row["beta_train"] - row["beta_heldout"]
        rows.append(row)
    return rows


def format_table(calib: Calibration) -> str:
    """The β table printed by `betaspec calibrate`."""
    rows = summary_rows(calib)
    s = calib.settings
    head = (f"{calib.model} {calib.view} keys, {calib.codecs[0].label()}, rotation={s['rotation']}, "
            f"centre={s['center']}; "
            f"tokens per head: " + ", ".join(f"{k} {v}" for k, v in calib.extra.get("tokens", {}).items()))
    lines = [head, "β = mean per-vector cos² between R(k − m) and its code vector (what the code carries); "
                   "β_eff = with the rank-r correction (energy-weighted)",
             f"{'layer':>5} | {'β train':>8} {'β held':>8} {'β ood':>8} {'gap':>7} | {'γ_r held':>8} {'β_eff held':>10}"]
    for r in rows:
        lines.append(f"{r['layer']:>5} | {r['beta_train']:>8.4f} {r['beta_heldout']:>8.4f} {r['beta_ood']:>8.4f} "
                     f"{r['gap']:>+7.4f} | {r['gamma_heldout']:>8.4f} {r['beta_eff_heldout']:>10.4f}")
    n = len(rows)
    mean = {k: sum(r[k] for r in rows) / n for k in rows[0] if k != "layer"}
    lines.append(f"{'mean':>5} | {mean['beta_train']:>8.4f} {mean['beta_heldout']:>8.4f} {mean['beta_ood']:>8.4f} "
                 f"{mean['gap']:>+7.4f} | {mean['gamma_heldout']:>8.4f} {mean['beta_eff_heldout']:>10.4f}")
    return "\n".join(lines)
