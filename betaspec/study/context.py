"""Shared, cached resources of a study run: models, text windows, keys, fitted codecs.

Widgets ask the context; the context computes each expensive thing once per run (and fitted
rotations once per machine, through calibration artifacts on disk), so eleven widgets cost
little more than their union.

Token sets are disjoint by document (`betaspec.data.corpus`): codecs are fitted on ``train`` keys only
and measured on ``train``, ``heldout`` (same kind of text, other documents) and ``ood`` (Milton
and an encyclopaedia article).

When a model's assets are absent, a ``synthetic`` key source stands in for the key-statistics
widgets: keys with a dominant DC mean, an anisotropic power-law spectrum and heavy tails, as
real attention keys have. It has no perplexity; widgets that need a language model skip it and
say so.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from impl.cache.codecs.transform import TransformCodec, default_levels
from impl.calibration.fit import code_on_transform, fit_transform
from impl.calibration.quality import CodecQuality, codec_quality
from impl.rotation import random_orthogonal

from ..data.catalog import MODELS, model_spec
from ..data.corpus import SPLIT_NAMES
from ..data.load import load_model
from ..data.locations import asset_present
from ..data.models import collect_keys, query_second_moments, text_windows
from ..keycache.artifacts import (
    ArtifactError,
    Calibration,
    load_calibration,
    save_calibration,
)

SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class StudyBudget:
    """Token counts, optimisation steps and evaluation sizes of one study mode."""

    quick: bool
    train_tokens: int        # keys per head fitted on
    heldout_tokens: int      # keys per head measured on (held-out and OOD each)
    window: int              # tokens per text window for keys
    steps: int               # learned-rotation steps
    batch_size: int          # keys per optimisation step
    lr: float
    ppl_windows: int         # perplexity: windows of held-out text …
    ppl_window: int          # … of this many tokens
    long_windows: int        # long-context perplexity: windows of held-out text …
    long_window: int         # … of this many tokens (SmolLM2 only: widgets 7 and 9)
    synthetic_layers: int
    synthetic_heads: int
    synthetic_dim: int

    @classmethod
    def for_mode(cls, quick: bool) -> "StudyBudget":
        if quick:
            return cls(quick=True, train_tokens=2048, heldout_tokens=1024, window=256, steps=60, batch_size=2048,
                       lr=2e-2, ppl_windows=2, ppl_window=256, long_windows=1, long_window=1024, synthetic_layers=4,
                       synthetic_heads=2, synthetic_dim=64)
        return cls(quick=False, train_tokens=8192, heldout_tokens=4096, window=512, steps=200, batch_size=4096,
                   lr=1e-2, ppl_windows=4, ppl_window=512, long_windows=1, long_window=4096, synthetic_layers=8,
                   synthetic_heads=4, synthetic_dim=128)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FitSpec:
    """What a fitted transform is made of: the rotation family, centring, and the objective of a
    learned rotation — the L1-max (sign) objective (`objective_bits = 1`) or the b-bit distortion
    (`objective_bits = b`). Every code is put on a fitted transform afterwards
    (`impl.calibration.fit.code_on_transform`), so codes that share a transform share one fit."""

    rotation: str
    center: bool
    objective_bits: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def stem(self) -> str:
        parts = [self.rotation, "centred" if self.center else "raw"]
        if self.objective_bits > 1 and self.rotation.startswith("learned"):
            parts.append(f"obj{self.objective_bits}")
        return "-".join(parts)


def objective_bits(rotation: str, bits: int, objective: str | None) -> int:
    """The b of the rotation objective a code of `bits` bits is fitted with: 1 (L1-max) for 1-bit codes
    or `objective="l1"`, `bits` otherwise; always 1 for data-independent rotations."""
    if not rotation.startswith("learned") or bits == 1 or objective == "l1":
        return 1
    return bits


@dataclass(frozen=True)
class RotationFit:
    """Per layer: the rank-0 codec (mean and rotation) fitted on train keys, and per head the
    learned rotation's training curves (empty for data-independent rotations)."""

    codecs: list[TransformCodec]
    curves: list[list[dict[str, list[float]]]]
    fit_seconds: list[float]


def synthetic_keys(layers: int, heads: int, dim: int, tokens: int, seed: int, token_seed: int) -> torch.Tensor:
    """Synthetic attention-like keys (L, H, T, d): `k = m + Q (σ ⊙ z)`, where `m` is a DC mean
    carrying most of the energy, `σᵢ ∝ i^{-0.8}` a power-law spectrum, `Q` a Haar rotation and `z`
    Student-t (ν = 5) coordinates — heavy-tailed and anisotropic, as real keys are. `seed` fixes
    the structure (`m`, `Q` per layer and head); `token_seed` the draws, so splits share the
    distribution and differ in their tokens."""
    structure = torch.Generator().manual_seed(seed)
    draws = torch.Generator().manual_seed(token_seed)
    out = torch.empty(layers, heads, tokens, dim)
    sigma = torch.arange(1, dim + 1, dtype=torch.float64) ** -0.8
    spread = math.sqrt(float((sigma ** 2).sum()) * 5 / 3)  # the rms norm of Q(σ ⊙ z): Var t₅ = 5/3
    for layer in range(layers):
        for h in range(heads):
            Q = random_orthogonal(dim, structure, dtype=torch.float64)
            m = torch.randn(dim, generator=structure, dtype=torch.float64)
            m = m / m.norm() * 3.0 * spread
            normal = torch.randn(tokens, dim, generator=draws, dtype=torch.float64)
            chi2 = 2.0 * torch._standard_gamma(torch.full((tokens, 1), 2.5, dtype=torch.float64), generator=draws)
            z = normal / torch.sqrt(chi2 / 5.0)
            out[layer, h] = (m + (z * sigma) @ Q.T).float()
    return out


# Leading positions of each window left out of the keys: none, because the cache's n_protect = 0
# operating points code every position (see StudyContext.keys).
SKIP_FIRST = 0


def _source_digest(files: Iterable[Path]) -> str:
    """SHA-256 (first 16 hex digits) of the files' paths (from the repository root) and bytes, in
    sorted order."""
    import hashlib

    top = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for f in sorted(Path(x).resolve() for x in files):
        h.update(f.relative_to(top).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


@functools.cache
def fitting_code_digest() -> str:
    """Digest of the sources that determine a fitted codec: the fitting package and the math it uses."""
    import impl

    base = Path(impl.__file__).parent
    return _source_digest([*(base / "calibration").rglob("*.py"),
                           *(base / f"{m}.py" for m in ("rotation", "sign_quant", "hadamard", "residual"))])


@functools.cache
def study_code_digest() -> str:
    """Digest of the sources that determine a widget's result: the `impl` package and the study, data
    and key-cache packages it reads through. A result made by other code is stale. Computed once per
    process (the sources of a running process do not change)."""
    import betaspec
    import impl

    pkg = Path(betaspec.__file__).parent
    return _source_digest([*Path(impl.__file__).parent.rglob("*.py"),
                           *(f for sub in ("study", "data", "keycache") for f in (pkg / sub).rglob("*.py"))])


@dataclass
class StudyContext:
    """Everything widgets share in one run (see the module docstring)."""

    budget: StudyBudget
    requested_models: tuple[str, ...] = ("smollm2",)
    artifacts_dir: Path = Path("artifacts") / "study"
    seed: int = 0
    progress: bool = True
    synthetic_fallback: bool = True
    _models: dict[str, Any] = field(default_factory=dict)
    _windows: dict[tuple, torch.Tensor] = field(default_factory=dict)
    _keys: dict[tuple, dict[str, torch.Tensor]] = field(default_factory=dict)
    _fits: dict[tuple, RotationFit] = field(default_factory=dict)
    _codecs: dict[tuple, list[TransformCodec]] = field(default_factory=dict)
    # Results one widget computes and another reuses in the same run (e.g. widget 7's perplexities,
    # read again by widgets 9 and 10); keys are namespaced by the widget module that fills them.
    memo: dict[Any, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- what is available
    @property
    def models(self) -> list[str]:
        """Requested real models whose assets are present."""
        return [m for m in self.requested_models if m in MODELS and asset_present(m) and asset_present("text")]

    @property
    def missing_models(self) -> list[str]:
        return [m for m in self.requested_models if m not in self.models]

    @property
    def key_sources(self) -> list[str]:
        """Sources of keys for the key-statistics widgets: the real models, plus ``synthetic``
        when no requested model is available (or always in quick mode, as the fallback CI runs)."""
        out = list(self.models)
        if self.synthetic_fallback and (not out or self.budget.quick):
            out.append(SYNTHETIC)
        return out

    def head_dim(self, source: str) -> int:
        return self.budget.synthetic_dim if source == SYNTHETIC else model_spec(source).head_dim

    def num_layers(self, source: str) -> int:
        return self.budget.synthetic_layers if source == SYNTHETIC else model_spec(source).num_layers

    def token_counts(self, source: str) -> dict[str, int]:
        b = self.budget
        return {"train": b.train_tokens, "heldout": b.heldout_tokens, "ood": b.heldout_tokens}

    # ---------------------------------------------------------------- models and text
    def model(self, name: str):
        """(model, tokenizer), loaded once."""
        if name == SYNTHETIC:
            raise ValueError("the synthetic key source has no language model")
        if name not in self._models:
            self._models[name] = load_model(name, progress=self.progress)
        return self._models[name]

    def windows(self, name: str, split: str, n: int, length: int) -> torch.Tensor:
        key = (name, split, n, length)
        if key not in self._windows:
            _, tok = self.model(name)
            self._windows[key] = text_windows(name, tok, split, n, length, progress=self.progress)
        return self._windows[key]

    def ppl_windows(self, name: str) -> torch.Tensor:
        """Held-out windows for perplexity (disjoint from the train documents keys are fitted on)."""
        return self.windows(name, "heldout", self.budget.ppl_windows, self.budget.ppl_window)

    # ---------------------------------------------------------------- keys
    def keys(self, source: str, view: str = "post_rope") -> dict[str, torch.Tensor]:
        """Keys of every layer for each split, ``{split: (L, H, T, d)}``, float32.

        Real models: every position of every window, the first included (Gemma's ``<bos>``, the
        attention sink of both models): with ``n_protect = 0`` the cache codes that key too, and a
        codec fitted without it codes it badly — on SmolLM2 a rank-8 learned+centred codec fitted
        without position 0 gave held-out perplexity ×2.19 against ×1.58 with it (same windows).
        Synthetic: independent draws per split from the same distribution."""
        key = (source, view)
        if key in self._keys:
            return self._keys[key]
        b = self.budget
        counts = self.token_counts(source)
        if source == SYNTHETIC:
            out = {split: synthetic_keys(b.synthetic_layers, b.synthetic_heads, b.synthetic_dim, counts[split],
                                         seed=self.seed, token_seed=self.seed + 1 + i)
                   for i, split in enumerate(SPLIT_NAMES)}
        else:
            model, _ = self.model(source)
            out = {}
            per_window = b.window - SKIP_FIRST
            for split in SPLIT_NAMES:
                n = -(-counts[split] // per_window)
                win = self.windows(source, split, n, b.window)
                with torch.no_grad():
                    k = collect_keys(model, win, view=view, progress=self.progress, skip_first=SKIP_FIRST)
                out[split] = k[:, :, : counts[split]].contiguous()
        self._keys[key] = out
        return out

    def query_moments(self, source: str) -> torch.Tensor:
        """`E[q qᵀ]` of the post-RoPE queries reading each kv head, (L, H, d, d) float64, over the
        train windows the keys come from (`betaspec.data.models.query_second_moments`). The synthetic
        source has no queries: identity moments (the query-weighted scale is then least squares)."""
        key = ("query_moments", source)
        if key in self._keys:
            return self._keys[key]
        if source == SYNTHETIC:
            b = self.budget
            out = torch.eye(b.synthetic_dim, dtype=torch.float64).expand(
                b.synthetic_layers, b.synthetic_heads, b.synthetic_dim, b.synthetic_dim).clone()
        else:
            model, _ = self.model(source)
            b = self.budget
            n = -(-self.token_counts(source)["train"] // (b.window - SKIP_FIRST))
            out = query_second_moments(model, self.windows(source, "train", n, b.window), progress=self.progress)
        self._keys[key] = out
        return out

    # ---------------------------------------------------------------- fitted codecs
    def _artifact_stem(self, source: str, view: str, spec: FitSpec) -> Path:
        b = self.budget
        mode = "quick" if b.quick else "full"
        return self.artifacts_dir / f"{source}-{view}-{spec.stem()}-{mode}-t{b.train_tokens}-s{b.steps}-seed{self.seed}"

    def _fit_settings(self, source: str, view: str, spec: FitSpec) -> dict[str, Any]:
        # `code` ties a cached fit to the code that made it: a fit from other code is refitted
        return {"source": source, "view": view, **spec.as_dict(), "seed": self.seed,
                "code": fitting_code_digest(), "skip_first": SKIP_FIRST,
                **{k: v for k, v in self.budget.as_dict().items()
                   if k in ("quick", "train_tokens", "window", "steps", "batch_size", "lr")}}

    def rotation_fit(self, source: str, view: str, rotation: str, center: bool, objective_bits: int = 1) -> RotationFit:
        """Mean and rotation of every layer, fitted on the train keys (`impl.calibration.fit.fit_transform`),
        cached in memory and, for real models, as a calibration artifact reused by later runs."""
        spec = FitSpec(rotation=rotation, center=center, objective_bits=objective_bits)
        key = (source, view, spec)
        if key in self._fits:
            return self._fits[key]
        settings = self._fit_settings(source, view, spec)
        stem = self._artifact_stem(source, view, spec)
        fit = None
        if source != SYNTHETIC:
            try:
                calib = load_calibration(stem)
                if calib.settings == settings:
                    fit = RotationFit(calib.codecs, calib.curves, calib.extra.get("fit_seconds", []))
            except ArtifactError as exc:
                if Path(str(stem) + ".json").exists():
                    print(f"betaspec study: refitting {stem.name}: the cached artifact is unusable ({exc})",
                          file=sys.stderr)
                fit = None
        if fit is None:
            fit = self._fit(source, view, spec)
            if source != SYNTHETIC:
                save_calibration(Calibration(model=source, view=view, settings=settings, codecs=fit.codecs,
                                             curves=fit.curves, extra={"fit_seconds": fit.fit_seconds}), stem)
        self._fits[key] = fit
        return fit

    def _fit(self, source: str, view: str, spec: FitSpec) -> RotationFit:
        import time

        from tqdm.auto import tqdm

        keys = self.keys(source, view)
        b = self.budget
        objective = None if spec.objective_bits == 1 else default_levels(spec.objective_bits, 1)[0]
        codecs, curves, seconds = [], [], []
        layers = range(keys["train"].shape[0])
        for layer in tqdm(layers, desc=f"fit {source} {view} {spec.stem()}", disable=not self.progress, leave=False):
            t0 = time.perf_counter()
            with torch.enable_grad():  # the runner computes widgets under no_grad; the rotation is trained
                codec, fits = fit_transform(keys["train"][layer], rotation=spec.rotation, center=spec.center,
                                            objective_levels=objective, steps=b.steps, lr=b.lr,
                                            batch_size=b.batch_size, seed=self.seed + layer,
                                            heldout=keys["heldout"][layer])
            seconds.append(time.perf_counter() - t0)
            codecs.append(codec)
            curves.append([{"train": f.train_curve, "heldout": f.heldout_curve} for f in fits])
        return RotationFit(codecs, curves, seconds)

    def codecs(self, source: str, view: str, rotation: str, center: bool, rank: int, *, bits: int = 1,
               levels: str = "gaussian", objective: str | None = None, channel_scale: bool = False,
               coef_bits: int = 16, scale_rule: str = "ls") -> list[TransformCodec]:
        """Per-layer codecs: a `bits`-bit code (levels, channel scale, rank-`rank` basis of the code
        residuals, coefficient format, scale rule) put on the transform fitted with the matching
        objective (`objective_bits`), all fitted on the train keys."""
        key = (source, view, rotation, center, rank, bits, levels, objective, channel_scale, coef_bits, scale_rule)
        if key in self._codecs:
            return self._codecs[key]
        fit = self.rotation_fit(source, view, rotation, center, objective_bits(rotation, bits, objective))
        train = self.keys(source, view)["train"]
        moments = self.query_moments(source) if scale_rule == "query" else None
        out = [code_on_transform(c, train[layer], bits=bits, levels=levels, channel_scale=channel_scale, rank=rank,
                                 coef_bits=coef_bits, scale_rule=scale_rule,
                                 query_moment=None if moments is None else moments[layer])
               for layer, c in enumerate(fit.codecs)]
        self._codecs[key] = out
        return out

    def quality(self, source: str, view: str, rotation: str, center: bool, rank: int,
                split: str, **code: Any) -> list[list[CodecQuality]]:
        """`[layer][head]` quality of the codec on one split's keys."""
        keys = self.keys(source, view)[split]
        return [codec_quality(c, keys[layer])
                for layer, c in enumerate(self.codecs(source, view, rotation, center, rank, **code))]
