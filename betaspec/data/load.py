"""Loading an offline model and its tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

from .catalog import model_spec
from .gguf import ensure_fp32_copy
from .offline import offline_transformers, transformers_progress


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
    with transformers_progress(tf, False):  # a second or so: no bar
        tok = tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = tf.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True, **kwargs)
    model.eval()
    return model, tok
