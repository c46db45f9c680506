"""Calibration artifacts: the fitted key codecs of a model, saved and loaded safely.

An artifact is two files with a common stem: ``<stem>.safetensors`` (per layer: the mean ``m``
(H, d), rotation ``R`` (H, d, d) and correction basis ``B`` (H, d, r)) and ``<stem>.json`` (model,
view, settings, token budgets, the β table per layer and head on train / held-out /
out-of-domain keys, the rotation training curves, and the SHA-256 of the tensor file).

Writing is atomic: both files are written to temporary names in the target directory, flushed,
and renamed — tensors first, metadata last — so an interrupted run leaves either the previous
artifact or none, never a torn one. Loading checks the format version, the checksum, the shapes
and the orthogonality of every rotation, and fails with a message naming the file and the fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from impl.cache.store import KeyCodec

from ..atomic_files import sha256_file, write_atomically, write_text_atomically

FORMAT_VERSION = 1


class ArtifactError(ValueError):
    """A calibration artifact is missing, corrupt or inconsistent; the message says which."""


@dataclass
class Calibration:
    """Fitted codecs for every layer of one model, with what was measured while fitting."""

    model: str
    view: str
    settings: dict[str, Any]
    codecs: list[KeyCodec]
    table: list[list[dict[str, Any]]] = field(default_factory=list)  # [layer][head] → {split: quality}
    curves: list[list[dict[str, list[float]]]] = field(default_factory=list)  # [layer][head] → {train, heldout}
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> int:
        return len(self.codecs)


def _paths(stem: Path | str) -> tuple[Path, Path]:
    s = Path(stem)
    if s.suffix in (".json", ".safetensors"):
        s = s.with_suffix("")
    return s.with_name(s.name + ".safetensors"), s.with_name(s.name + ".json")


def save_calibration(calib: Calibration, stem: Path | str) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns both paths."""
    tensor_path, meta_path = _paths(stem)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for i, c in enumerate(calib.codecs):
        tensors[f"layer{i}.mean"] = c.mean.detach().float().contiguous().cpu()
        tensors[f"layer{i}.rotation"] = c.rotation.detach().float().contiguous().cpu()
        tensors[f"layer{i}.basis"] = c.basis.detach().float().contiguous().cpu()
    write_atomically(tensor_path, lambda p: save_file(tensors, str(p)))
    meta = {
        "format": "betaspec-calibration",
        "version": FORMAT_VERSION,
        "model": calib.model,
        "view": calib.view,
        "layers": calib.layers,
        "heads": [c.heads for c in calib.codecs],
        "dim": [c.dim for c in calib.codecs],
        "rank": [c.rank for c in calib.codecs],
        "settings": calib.settings,
        "table": calib.table,
        "curves": calib.curves,
        "extra": calib.extra,
        "tensors": {"file": tensor_path.name, "sha256": sha256_file(tensor_path)},
    }
    text = json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_text_atomically(meta_path, text)
    return tensor_path, meta_path


def load_calibration(stem: Path | str) -> Calibration:
    """Load and validate an artifact written by `save_calibration`."""
    tensor_path, meta_path = _paths(stem)
    if not meta_path.exists():
        raise ArtifactError(f"{meta_path}: calibration metadata not found (run `betaspec calibrate` first)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path}: not valid JSON ({exc})") from exc
    if meta.get("format") != "betaspec-calibration" or meta.get("version") != FORMAT_VERSION:
        raise ArtifactError(f"{meta_path}: not a betaspec calibration of format version {FORMAT_VERSION}")
    if not tensor_path.exists():
        raise ArtifactError(f"{tensor_path}: tensor file missing (metadata points to it)")
    digest = sha256_file(tensor_path)
    if digest != meta["tensors"]["sha256"]:
        raise ArtifactError(
            f"{tensor_path}: checksum mismatch (file {digest[:12]}…, metadata {meta['tensors']['sha256'][:12]}…); "
            "the artifact is corrupt or was modified — recalibrate"
        )
    try:
        tensors = load_file(str(tensor_path))
    except Exception as exc:
        raise ArtifactError(f"{tensor_path}: cannot read tensors ({exc})") from exc
    codecs = []
    for i in range(meta["layers"]):
        H, d, r = meta["heads"][i], meta["dim"][i], meta["rank"][i]
        try:
            m, R, B = (tensors[f"layer{i}.{n}"] for n in ("mean", "rotation", "basis"))
        except KeyError as exc:
            raise ArtifactError(f"{tensor_path}: tensor {exc.args[0]} missing") from exc
        for name, t, shape in (("mean", m, (H, d)), ("rotation", R, (H, d, d)), ("basis", B, (H, d, r))):
            if tuple(t.shape) != shape:
                raise ArtifactError(f"{tensor_path}: layer{i}.{name} has shape {tuple(t.shape)}, expected {shape}")
        try:
            codecs.append(KeyCodec(mean=m, rotation=R, basis=B))
        except ValueError as exc:
            raise ArtifactError(f"{tensor_path}: layer {i}: {exc}") from exc
    return Calibration(model=meta["model"], view=meta["view"], settings=meta["settings"], codecs=codecs,
                       table=meta.get("table", []), curves=meta.get("curves", []), extra=meta.get("extra", {}))
