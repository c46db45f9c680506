"""Calibration artifacts: the fitted key codecs of a model, saved and loaded safely.

An artifact is two files with a common stem: ``<stem>.safetensors`` (per layer, the codec's fitted
tensors, named ``layer<i>.<name>``) and ``<stem>.json`` (model, view, settings, per layer the codec
kind and its settings, the quality table per layer and head on train / held-out / out-of-domain
keys, the rotation training curves, and the SHA-256 of the tensor file).

Writing is atomic: both files are written to temporary names in the target directory, flushed,
and renamed — tensors first, metadata last — so an interrupted run leaves either the previous
artifact or none, never a torn one. Loading validates the metadata against `METADATA_SCHEMA`, the
checksum, and each codec's tensors (shapes, orthogonality, …) and fails with `ArtifactError`
naming the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import torch
from safetensors.torch import load_file, save_file

from impl.cache.codecs import CODECS, codec_from_parameters
from impl.cache.codecs.base import KeyCodec

from ..atomic_files import sha256_file, write_atomically, write_text_atomically

FORMAT = "betaspec-calibration"
FORMAT_VERSION = 2

METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "version", "model", "view", "layers", "codecs", "settings", "tensors"],
    "properties": {
        "format": {"const": FORMAT},
        "version": {"const": FORMAT_VERSION},
        "model": {"type": "string", "minLength": 1},
        "view": {"enum": ["post_rope", "pre_rope"]},
        "layers": {"type": "integer", "minimum": 1},
        "codecs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["kind", "settings"], "additionalProperties": False,
            "properties": {"kind": {"enum": sorted(CODECS)}, "settings": {"type": "object"}}}},
        "settings": {"type": "object"},
        "table": {"type": "array"},
        "curves": {"type": "array"},
        "extra": {"type": "object"},
        "tensors": {"type": "object", "required": ["file", "sha256"], "properties": {
            "file": {"type": "string"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
    },
}


class ArtifactError(ValueError):
    """A calibration artifact is missing, corrupt or inconsistent; the message names the file and
    the field."""


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

    @property
    def kind(self) -> str:
        """The codec kind of the layers (all layers share it)."""
        return self.codecs[0].kind


def _paths(stem: Path | str) -> tuple[Path, Path]:
    s = Path(stem)
    if s.suffix in (".json", ".safetensors"):
        s = s.with_suffix("")
    return s.with_name(s.name + ".safetensors"), s.with_name(s.name + ".json")


def save_calibration(calib: Calibration, stem: Path | str) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns both paths."""
    if not calib.codecs:
        raise ValueError("calib.codecs must hold one codec per layer, got none")
    tensor_path, meta_path = _paths(stem)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for i, c in enumerate(calib.codecs):
        for name, t in c.parameters().items():
            tensors[f"layer{i}.{name}"] = t.detach().contiguous().cpu()
    write_atomically(tensor_path, lambda p: save_file(tensors, str(p)))
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": calib.model,
        "view": calib.view,
        "layers": calib.layers,
        "codecs": [{"kind": c.kind, "settings": c.settings()} for c in calib.codecs],
        "settings": calib.settings,
        "table": calib.table,
        "curves": calib.curves,
        "extra": calib.extra,
        "tensors": {"file": tensor_path.name, "sha256": sha256_file(tensor_path)},
    }
    text = json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_text_atomically(meta_path, text)
    return tensor_path, meta_path


def _read_metadata(meta_path: Path) -> dict[str, Any]:
    if not meta_path.exists():
        raise ArtifactError(f"{meta_path}: calibration metadata not found (run `betaspec calibrate` first)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path}: not valid UTF-8 JSON ({exc})") from exc
    if isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("version") != FORMAT_VERSION:
        raise ArtifactError(f"{meta_path}: field 'version' is {meta.get('version')!r}; this betaspec reads version "
                            f"{FORMAT_VERSION} — recalibrate")
    try:
        jsonschema.validate(meta, METADATA_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ArtifactError(f"{meta_path}: field {where!r}: {exc.message}") from None
    if len(meta["codecs"]) != meta["layers"]:
        raise ArtifactError(f"{meta_path}: field 'codecs' lists {len(meta['codecs'])} codecs for "
                            f"{meta['layers']} layers")
    return meta


def load_calibration(stem: Path | str) -> Calibration:
    """Load and validate an artifact written by `save_calibration`."""
    tensor_path, meta_path = _paths(stem)
    meta = _read_metadata(meta_path)
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
    except Exception as exc:  # safetensors raises its own error types for a malformed file
        raise ArtifactError(f"{tensor_path}: cannot read tensors ({exc})") from exc
    codecs = []
    for i, entry in enumerate(meta["codecs"]):
        prefix = f"layer{i}."
        mine = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            codecs.append(codec_from_parameters(entry["kind"], entry["settings"], mine))
        except ValueError as exc:
            raise ArtifactError(f"{tensor_path}: layer {i} ({entry['kind']}): {exc}") from exc
    return Calibration(model=meta["model"], view=meta["view"], settings=meta["settings"], codecs=codecs,
                       table=meta.get("table", []), curves=meta.get("curves", []), extra=meta.get("extra", {}))
