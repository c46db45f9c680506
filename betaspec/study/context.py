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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import torch

from impl.cache.store import KeyCodec
from impl.calibration.fit import CodecQuality, codec_quality, fit_codec
from impl.residual import rank_r_correction
from impl.rotation import random_orthogonal

from ..data.catalog import MODELS, model_spec
from ..data.load import load_model
from ..data.locations import asset_present
from ..data.models import collect_keys, text_windows
from ..keycache.artifacts import (
    ArtifactError,
    Calibration,
    load_calibration,
    save_calibration,
)

SPLITS = ("train", "heldout", "ood")
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
    synthetic_layers: int
    synthetic_heads: int
    synthetic_dim: int

    @classmethod
    def for_mode(cls, quick: bool) -> "StudyBudget":
        if quick:
            return cls(quick=True, train_tokens=2048, heldout_tokens=1024, window=256, steps=60, batch_size=2048,
                       lr=2e-2, ppl_windows=2, ppl_window=256, synthetic_layers=4, synthetic_heads=2,
                       synthetic_dim=64)
        return cls(quick=False, train_tokens=8192, heldout_tokens=4096, window=512, steps=200, batch_size=4096,
                   lr=1e-2, ppl_windows=6, ppl_window=512, synthetic_layers=8, synthetic_heads=4, synthetic_dim=128)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RotationFit:
    """Per layer: the rank-0 codec (mean and rotation) fitted on train keys, and per head the
    learned rotation's training curves (empty for data-independent rotations)."""

    codecs: list[KeyCodec]
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
    _codecs: dict[tuple, list[KeyCodec]] = field(default_factory=dict)
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
                   for i, split in enumerate(SPLITS)}
        else:
            model, _ = self.model(source)
            out = {}
            per_window = b.window - SKIP_FIRST
            for split in SPLITS:
                n = -(-counts[split] // per_window)
                win = self.windows(source, split, n, b.window)
                with torch.no_grad():
                    k = collect_keys(model, win, view=view, progress=self.progress, skip_first=SKIP_FIRST)
                out[split] = k[:, :, : counts[split]].contiguous()
        self._keys[key] = out
        return out

    # ---------------------------------------------------------------- fitted codecs
    def _artifact_stem(self, source: str, view: str, rotation: str, center: bool) -> Path:
        b = self.budget
        mode = "quick" if b.quick else "full"
        centre = "centred" if center else "raw"
        return self.artifacts_dir / f"{source}-{view}-{rotation}-{centre}-{mode}-t{b.train_tokens}-s{b.steps}-seed{self.seed}"

    def _fit_settings(self, source: str, view: str, rotation: str, center: bool) -> dict[str, Any]:
        # `code` ties a cached fit to the code that made it: a fit from other code is refitted
        return {"source": source, "view": view, "rotation": rotation, "center": center, "seed": self.seed,
                "code": fitting_code_digest(), "skip_first": SKIP_FIRST,
                **{k: v for k, v in self.budget.as_dict().items()
                   if k in ("quick", "train_tokens", "window", "steps", "batch_size", "lr")}}

    def rotation_fit(self, source: str, view: str, rotation: str, center: bool) -> RotationFit:
        """Mean and rotation of every layer, fitted on the train keys (rank 0), cached in memory
        and, for real models, as a calibration artifact reused by later runs."""
        key = (source, view, rotation, center)
        if key in self._fits:
            return self._fits[key]
        settings = self._fit_settings(source, view, rotation, center)
        stem = self._artifact_stem(source, view, rotation, center)
        fit = None
        if source != SYNTHETIC:
            try:
                calib = load_calibration(stem)
                if calib.settings == settings:
                    fit = RotationFit(calib.codecs, calib.curves, calib.extra.get("fit_seconds", []))
            except ArtifactError:
                fit = None
        if fit is None:
            fit = self._fit(source, view, rotation, center)
            if source != SYNTHETIC:
                save_calibration(Calibration(model=source, view=view, settings=settings, codecs=fit.codecs,
                                             curves=fit.curves, extra={"fit_seconds": fit.fit_seconds}), stem)
        self._fits[key] = fit
        return fit

    def _fit(self, source: str, view: str, rotation: str, center: bool) -> RotationFit:
        import time

        from tqdm.auto import tqdm

        keys = self.keys(source, view)
        b = self.budget
        codecs, curves, seconds = [], [], []
        layers = range(keys["train"].shape[0])
        for layer in tqdm(layers, desc=f"fit {source} {view} {rotation}{' centred' if center else ''}",
                          disable=not self.progress, leave=False):
            t0 = time.perf_counter()
            with torch.enable_grad():  # the runner computes widgets under no_grad; the rotation is trained
                codec, fits = fit_codec(keys["train"][layer], rotation=rotation, center=center, rank=0,
                                        steps=b.steps, lr=b.lr, batch_size=b.batch_size, seed=self.seed + layer,
                                        heldout=keys["heldout"][layer])
            seconds.append(time.perf_counter() - t0)
            codecs.append(codec)
            curves.append([{"train": f.train_curve, "heldout": f.heldout_curve} for f in fits])
        return RotationFit(codecs, curves, seconds)

    def codecs(self, source: str, view: str, rotation: str, center: bool, rank: int) -> list[KeyCodec]:
        """Per-layer codecs with a rank-`rank` correction basis, fitted on the train keys' 1-bit
        residuals in the rotated frame (top-r right singular vectors)."""
        key = (source, view, rotation, center, rank)
        if key in self._codecs:
            return self._codecs[key]
        base = self.rotation_fit(source, view, rotation, center).codecs
        if rank == 0:
            out = base
        else:
            train = self.keys(source, view)["train"]
            out = []
            for layer, codec in enumerate(base):
                y = codec.transform(train[layer].unsqueeze(0))[0]                 # (H, T, d)
                alpha = y.abs().mean(-1, keepdim=True)
                resid = (y - alpha * torch.where(y >= 0, 1.0, -1.0)).double()
                basis = torch.stack([rank_r_correction(resid[h], rank).basis for h in range(codec.heads)]).float()
                out.append(replace(codec, basis=basis))
        self._codecs[key] = out
        return out

    def quality(self, source: str, view: str, rotation: str, center: bool, rank: int,
                split: str) -> list[list[CodecQuality]]:
        """`[layer][head]` quality of the codec on one split's keys."""
        keys = self.keys(source, view)[split]
        return [codec_quality(c, keys[layer]) for layer, c in enumerate(self.codecs(source, view, rotation, center, rank))]
