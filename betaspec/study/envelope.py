"""The versioned JSON file each study widget writes, and its schema.

Every widget result is one file ``widget_NN.json`` holding a common envelope — what was run
(settings, models, token counts, seeds), with what (package versions), how long it took, and
whether it was the quick mode — around the widget's own ``data`` and its ``claims``: each number
the research write-up states, what this run measured, and a verdict. Files are validated against
the envelope schema plus the widget's data schema before they are written, and written
atomically.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

import jsonschema

from ..atomic_files import write_text_atomically

SCHEMA_ID = "betaspec-study"
SCHEMA_VERSION = 1
VERDICTS = ("reproduces", "partly reproduces", "does not reproduce", "not measured", "identity")
"""`identity`: holds by construction — the measured number is computed from the same quantities that
define the claim, so it cannot come out otherwise (SPEC.md, "Verdicts in reports"); shown, never
counted as evidence."""

CLAIM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "text", "writeup", "measured", "verdict", "evidence"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9_]+$"},
        "text": {"type": "string", "minLength": 1},           # the write-up's claim, quoted or paraphrased
        "writeup": {},                                          # the number(s) the write-up states
        "measured": {},                                         # what this run measured (number, range, map)
        "verdict": {"enum": list(VERDICTS)},
        "evidence": {"type": "string", "minLength": 1},         # one sentence: on which keys/split/model
    },
}

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "version", "widget", "title", "quick", "created", "wall_time_s", "versions",
                 "settings", "models", "token_counts", "seeds", "data", "claims"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "version": {"const": SCHEMA_VERSION},
        "widget": {"type": "integer", "minimum": 1, "maximum": 11},
        "title": {"type": "string"},
        "quick": {"type": "boolean"},
        "created": {"type": "string"},
        "wall_time_s": {"type": "number", "minimum": 0},
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "settings": {"type": "object"},
        "models": {"type": "array", "items": {"type": "string"}},
        "token_counts": {"type": "object"},
        "seeds": {"type": "array", "items": {"type": "integer"}},
        "data": {"type": "object"},
        "claims": {"type": "array", "items": CLAIM_SCHEMA},
    },
}


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on (and Python, and the platform)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("betaspec", "torch", "numpy", "transformers", "safetensors", "gguf"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def validate(result: dict[str, Any], data_schema: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless `result` fits the envelope and its data schema."""
    jsonschema.validate(result, ENVELOPE_SCHEMA)
    jsonschema.validate(result["data"], data_schema)


def write_json_atomically(obj: dict[str, Any], path: Path) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    write_text_atomically(path, text)


def result_path(out_dir: Path, widget: int) -> Path:
    return Path(out_dir) / f"widget_{widget:02d}.json"


def load_result(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
