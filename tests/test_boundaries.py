"""Bad input at the boundaries gets a clear error naming the argument — the cases the review of
issue #12 found getting through. (Others live beside the code they guard: keys that overflow float16,
`n_protect=True` and integer exact dtypes in test_store.py; damaged artifact metadata in
test_artifacts.py; non-finite held-out keys, `lr=inf` and `srht_matrix(0)` in test_calibration.py.)"""

import pytest
import torch

from betaspec.keycache.artifacts import ArtifactError, Calibration, save_calibration
from betaspec.keycache.runs import CachePolicy, codecs_for
from impl.cache.codecs.base import CodecError
from impl.cache.codecs.transform import TransformCodec
from impl.cache.packing import pack_signs, packed_sign_scores
from impl.last_mile import deficit_expansion
from impl.rotation import learn_rotation


@pytest.fixture
def smollm2_artifact(tmp_path):
    """A calibration artifact for SmolLM2's shape (30 layers, 3 kv heads, d = 64), fitted without each
    window's first position (protect = 1)."""
    codecs = [TransformCodec.identity(3, 64) for _ in range(30)]
    stem = tmp_path / "art"
    save_calibration(Calibration(model="smollm2", view="post_rope", settings={"protect": 1}, codecs=codecs), stem)
    return stem


def test_an_artifact_fitted_without_the_sink_is_refused_for_a_cache_that_codes_it(smollm2_artifact):
    with pytest.raises(ArtifactError, match=r"fitted without each window's first 1 position.*n_protect = 0"):
        codecs_for("smollm2", calibration=smollm2_artifact, n_protect=0)
    codecs, _ = codecs_for("smollm2", calibration=smollm2_artifact, n_protect=1)
    assert len(codecs) == 30


def test_an_artifact_fitted_for_another_codec_is_refused(smollm2_artifact):
    with pytest.raises(ArtifactError, match="holds 'transform' codecs, not 'kivi'"):
        codecs_for("smollm2", calibration=smollm2_artifact, codec="kivi", n_protect=1)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(codec="zip"), CodecError, "codec must be one of"),
    (dict(codec="kivi", bits=0), CodecError, "bits"),
    (dict(codec="kivi", bits=9), CodecError, "bits"),
    (dict(codec="kivi", group=0), CodecError, "group"),
    (dict(codec="qjl", m=0), CodecError, "m must be an integer ≥ 1"),
    (dict(codec="turboquant_mse", bits=5), CodecError, "bits"),
    (dict(codec="transform", bits=5), ValueError, "bits"),
    (dict(codec="transform", rotation="learned"), ValueError, "rotation 'identity' or 'srht'"),
])
def test_data_free_codecs_reject_bad_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        codecs_for("smollm2", **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_protect=True), "n_protect must be an integer ≥ 0"),
    (dict(window=-1), "window must be an integer ≥ 0"),
    (dict(flush_block=0), "flush_block must be an integer ≥ 1"),
    (dict(exact_dtype=torch.int16), "exact_dtype must be None or a floating-point"),
])
def test_cache_policy_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CachePolicy(**kwargs)


@pytest.mark.parametrize("q, message", [
    (torch.ones(2, 8, dtype=torch.int64), "q must be a floating-point tensor"),
    (torch.full((2, 8), float("nan")), "q must be finite"),
])
def test_packed_sign_scores_rejects_integer_and_nan_queries(q, message):
    with pytest.raises(ValueError, match=message):
        packed_sign_scores(q, pack_signs(torch.randn(3, 8)), 8)


def test_deficit_expansion_at_the_origin_follows_the_total_convention():
    s = torch.tensor([1.0, -1.0, 1.0])
    out = deficit_expansion(s, -s, 1.0)                 # s + t·u = 0: Lean's x / 0 = 0, never NaN
    assert out.item() == 0.0


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 0.0, -1.0, True])
def test_learn_rotation_rejects_a_non_finite_or_non_positive_learning_rate(lr):
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        learn_rotation(torch.randn(8, 4), steps=1, lr=lr)
