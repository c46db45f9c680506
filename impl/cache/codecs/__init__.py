"""Key codecs behind one interface (`base.KeyCodec`): betaspec's own code on a fitted transform and
the published peers, each written from its paper. `CODECS` maps a codec kind to its class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from impl.cache.codecs.base import CodecError, KeyCodec
from impl.cache.codecs.kivi import KiviCodec
from impl.cache.codecs.qjl import QJLCodec
from impl.cache.codecs.transform import TransformCodec
from impl.cache.codecs.turboquant import TurboQuantMSE, TurboQuantProd, outlier_channels_by_rms
from impl.validation import check_positive_int

CODECS: dict[str, type[KeyCodec]] = {
    TransformCodec.kind: TransformCodec,
    KiviCodec.kind: KiviCodec,
    QJLCodec.kind: QJLCodec,
    TurboQuantMSE.kind: TurboQuantMSE,
    TurboQuantProd.kind: TurboQuantProd,
}

PEER_SETTINGS: dict[str, tuple[str, ...]] = {
    "kivi": ("bits", "group", "side_dtype"),
    "qjl": ("m", "sketch", "initial_layers", "initial_m", "side_dtype"),
    "turboquant_mse": ("bits", "outlier_channels", "outlier_bits", "calibration_keys", "side_dtype"),
    "turboquant_prod": ("bits", "outlier_channels", "outlier_bits", "calibration_keys", "side_dtype"),
}


def codec_class(kind: object) -> type[KeyCodec]:
    """The codec class registered as `kind`; CodecError naming the known kinds otherwise."""
    if not isinstance(kind, str) or kind not in CODECS:
        raise CodecError(f"codec must be one of {sorted(CODECS)}, got {kind!r}")
    return CODECS[kind]


def codec_from_parameters(kind: str, settings: dict[str, Any], tensors: dict[str, Tensor]) -> KeyCodec:
    """Rebuild a codec of `kind` from what an artifact stored."""
    return codec_class(kind).from_parameters(settings, tensors)


def peer_codecs(kind: str, layers: int, heads: int, dim: int, seed: int = 0, **settings: Any) -> list[KeyCodec]:
    """One data-free peer codec per layer, layer `l` drawn from seed `1000·seed + l`:

    * ``"kivi"`` — `bits` (2), `group` G (32); no randomness;
    * ``"qjl"`` — `m` (2·dim, the published 256 for d = 128), `sketch` ("orthogonal"), and the
      published larger sketch for the first layers: `initial_layers` (0; published 15) use
      `initial_m` (published 512);
    * ``"turboquant_mse"`` / ``"turboquant_prod"`` — `bits` (required), and for the fractional
      settings `outlier_channels` n_o (0) at `outlier_bits`, whose channels are chosen per layer
      and head by `outlier_channels_by_rms` on `calibration_keys` (one key tensor (B, H, T, d) per
      layer; required when n_o > 0);

    and `side_dtype` (float16) for all. CodecError names an unknown kind or a bad setting."""
    if kind not in PEER_SETTINGS:
        raise CodecError(f"kind must be one of the peer codecs {sorted(PEER_SETTINGS)}, got {kind!r}")
    unknown = sorted(set(settings) - set(PEER_SETTINGS[kind]))
    if unknown:
        raise CodecError(f"unknown setting(s) {unknown} for {kind!r}; expected some of {list(PEER_SETTINGS[kind])}")
    try:
        layers = check_positive_int(layers, "layers")
        heads = check_positive_int(heads, "heads")
        dim = check_positive_int(dim, "dim")
        seed = check_positive_int(seed, "seed", minimum=0)
        side = {"side_dtype": settings["side_dtype"]} if "side_dtype" in settings else {}
        if kind == "kivi":
            return [KiviCodec.for_layer(heads, dim, bits=settings.get("bits", 2), group=settings.get("group", 32),
                                        **side) for _ in range(layers)]
        if kind == "qjl":
            m = check_positive_int(settings.get("m", 2 * dim), "m")
            first = check_positive_int(settings.get("initial_layers", 0), "initial_layers", minimum=0)
            m0 = check_positive_int(settings.get("initial_m", m), "initial_m")
            return [QJLCodec.random(heads, dim, m0 if l < first else m, 1000 * seed + l,
                                    sketch=settings.get("sketch", "orthogonal"), **side) for l in range(layers)]
        if "bits" not in settings:
            raise CodecError(f"{kind} needs the setting 'bits' (1…4)")
        cls = TurboQuantMSE if kind == "turboquant_mse" else TurboQuantProd
        n_o = check_positive_int(settings.get("outlier_channels", 0), "outlier_channels", minimum=0)
        index: list[Tensor | None] = [None] * layers
        if n_o:
            keys = settings.get("calibration_keys")
            if not isinstance(keys, Sequence) or len(keys) != layers:
                raise CodecError(f"outlier_channels = {n_o} needs calibration_keys: one key tensor (B, H, T, d) "
                                 f"per layer ({layers}) to choose each head's outlier channels")
            index = [outlier_channels_by_rms(k, n_o) for k in keys]
            if "outlier_bits" not in settings:
                raise CodecError("outlier_channels > 0 needs the setting 'outlier_bits'")
        return [cls.random(heads, dim, settings["bits"], 1000 * seed + l, outlier_index=index[l],
                           outlier_bits=settings.get("outlier_bits") if n_o else None, **side)
                for l in range(layers)]
    except CodecError:
        raise
    except ValueError as exc:
        raise CodecError(f"{kind}: {exc}") from exc
