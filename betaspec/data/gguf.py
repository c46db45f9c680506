"""Converting a GGUF model to a plain float32 safetensors copy, once: transformers dequantises GGUF in
30–80 s, while the copy reloads in about a second."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..atomic_files import replace_directory
from .catalog import model_spec
from .fetch import Step
from .locations import fp32_dir, gguf_path
from .offline import offline_transformers, transformers_progress


def _fp32_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file() and (
        path / "tokenizer_config.json"
    ).is_file()


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
    step = Step(name, progress)
    step.say(f"first load: converting {gguf.name} to a float32 safetensors copy (once; 0.5–2 min) ...")
    t0 = time.perf_counter()
    with transformers_progress(tf, progress):
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
        with transformers_progress(tf, progress):
            plain.save_pretrained(work)
        tok.save_pretrained(work)
        provenance = {"source": gguf.name, "source_sha256": model_spec(name).gguf_sha256,
                      "transformers": tf.__version__, "torch": torch.__version__}
        (work / "betaspec-provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        if not _fp32_complete(final):  # another process may have finished first
            replace_directory(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step.say(f"  wrote {final} in {time.perf_counter() - t0:.1f} s")
    return final
