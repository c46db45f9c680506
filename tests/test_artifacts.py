"""Calibration artifacts: round trip, atomic writes, corruption detected on load."""

import json

import pytest
import torch

from betaspec.keycache import artifacts
from betaspec.atomic_files import sha256_file
from betaspec.keycache.artifacts import (
    ArtifactError,
    Calibration,
    load_calibration,
    save_calibration,
)
from impl.calibration.fit import fit_codec


@pytest.fixture
def calib():
    keys = torch.randn(2, 64, 16, generator=torch.Generator().manual_seed(0)) + 2
    codecs = [fit_codec(keys, rotation="srht", rank=2, seed=i)[0] for i in range(3)]
    return Calibration(model="tiny", view="post_rope", settings={"rotation": "srht", "rank": 2}, codecs=codecs,
                       table=[[{"train": {"beta": 0.7}}] * 2] * 3)


def test_round_trip(tmp_path, calib):
    tpath, mpath = save_calibration(calib, tmp_path / "art")
    assert tpath.name == "art.safetensors" and mpath.name == "art.json"
    back = load_calibration(tmp_path / "art")
    assert back.model == "tiny" and back.settings == calib.settings and back.table == calib.table
    for a, b in zip(back.codecs, calib.codecs):
        assert a.settings() == b.settings()
        for name, t in b.parameters().items():
            assert torch.equal(a.parameters()[name], t)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art.json", "art.safetensors"]  # no temp files left


def test_corrupted_tensor_file_is_detected(tmp_path, calib):
    tpath, _ = save_calibration(calib, tmp_path / "art")
    data = bytearray(tpath.read_bytes())
    data[-5] ^= 0xFF
    tpath.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_calibration(tmp_path / "art")


def test_missing_files_are_named(tmp_path, calib):
    with pytest.raises(ArtifactError, match="calibration metadata not found"):
        load_calibration(tmp_path / "nothing")
    tpath, _ = save_calibration(calib, tmp_path / "art")
    tpath.unlink()
    with pytest.raises(ArtifactError, match="tensor file missing"):
        load_calibration(tmp_path / "art")


def test_shape_and_orthogonality_are_validated(tmp_path, calib):
    from safetensors.torch import load_file, save_file

    tpath, mpath = save_calibration(calib, tmp_path / "art")
    tensors = load_file(str(tpath))
    tensors["layer1.rotation"] = tensors["layer1.rotation"] * 1.01  # no longer orthogonal
    save_file(tensors, str(tpath))
    meta = json.loads(mpath.read_text())
    meta["tensors"]["sha256"] = sha256_file(tpath)  # a consistent checksum: the content is what is wrong
    mpath.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"layer 1 \(transform\): rotation must be orthogonal"):
        load_calibration(tmp_path / "art")
    meta["codecs"][0]["settings"]["heads"] = 3
    mpath.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"layer 0 \(transform\): tensor 'mean' has shape \(2, 16\), expected \(3, 16\)"):
        load_calibration(tmp_path / "art")


def test_interrupted_write_leaves_no_artifact(tmp_path, calib, monkeypatch):
    def boom(tensors, path):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        save_calibration(calib, tmp_path / "art")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rewrite_keeps_the_previous_artifact(tmp_path, calib, monkeypatch):
    save_calibration(calib, tmp_path / "art")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    original_dumps = json.dumps

    def fail_on_metadata(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts.json, "dumps", fail_on_metadata)
    calib.codecs[0] = fit_codec(torch.randn(2, 64, 16), rotation="identity", rank=2)[0]
    with pytest.raises(OSError, match="disk full"):
        save_calibration(calib, tmp_path / "art")
    monkeypatch.setattr(artifacts.json, "dumps", original_dumps)
    # the tensor file was replaced before the metadata failed: the checksum no longer matches,
    # so the torn pair is refused rather than silently loaded
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_calibration(tmp_path / "art")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


def _damage(mpath, edit):
    meta = json.loads(mpath.read_text())
    edit(meta)
    mpath.write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.pop("model"), "(top level)"),                        # a missing field (KeyError before)
    (lambda m: m.update(codecs="transform"), "codecs"),                # wrong type (AttributeError before)
    (lambda m: m["codecs"].pop(), "codecs"),                           # too few codecs (IndexError before)
    (lambda m: m["codecs"][0].update(kind="zip"), "codecs/0/kind"),    # an unknown codec kind
    (lambda m: m["codecs"][1]["settings"].pop("bits"), "setting 'bits' is missing"),
    (lambda m: m["tensors"].update(sha256="xyz"), "tensors/sha256"),
    (lambda m: m.update(version=1), "version"),
])
def test_damaged_metadata_names_the_file_and_the_field(tmp_path, calib, edit, field):
    _, mpath = save_calibration(calib, tmp_path / "art")
    _damage(mpath, edit)
    with pytest.raises(ArtifactError) as info:
        load_calibration(tmp_path / "art")
    assert str(mpath) in str(info.value) or "art.safetensors" in str(info.value)
    assert field in str(info.value)


def test_metadata_that_is_not_utf8_json_is_an_artifact_error(tmp_path, calib):
    _, mpath = save_calibration(calib, tmp_path / "art")
    mpath.write_bytes(b"\xff\xfe{not json")
    with pytest.raises(ArtifactError, match="not valid UTF-8 JSON"):
        load_calibration(tmp_path / "art")


def test_the_study_refits_after_a_damaged_artifact_and_says_so(tmp_path, capsys):
    from betaspec.study.context import StudyBudget, StudyContext

    class _Ctx(StudyContext):          # a "real model" source backed by synthetic keys
        def keys(self, source, view="post_rope"):
            return super().keys("synthetic", view)

    ctx = _Ctx(budget=StudyBudget.for_mode(True), artifacts_dir=tmp_path, progress=False)
    first = ctx.rotation_fit("fake", "post_rope", "srht", True)
    stems = sorted(tmp_path.glob("*.json"))
    assert len(stems) == 1
    stems[0].write_text("{")                                           # damaged
    again = _Ctx(budget=StudyBudget.for_mode(True), artifacts_dir=tmp_path, progress=False)
    second = again.rotation_fit("fake", "post_rope", "srht", True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refitting" in err[0] and "not valid UTF-8 JSON" in err[0]
    assert torch.equal(first.codecs[0].rotation, second.codecs[0].rotation)


def test_default_stems_tell_every_fitted_setting_apart():
    """Two calibrations that differ in any setting that changes the fitted codec get different
    default artifact names, so one never overwrites the other."""
    from dataclasses import replace

    from betaspec.keycache.calibrate import CalibrationSettings

    base = CalibrationSettings(model="smollm2", bits=2)
    variants = [base, replace(base, bits=3), replace(base, levels="fitted"), replace(base, channel_scale=True),
                replace(base, objective="l1"), replace(base, scale_rule="unbiased"), replace(base, scale_rule="query"),
                replace(base, coef_bits=8), replace(base, rank=0), replace(base, protect=4), replace(base, center=False),
                replace(base, rotation="srht"), replace(base, seed=1), replace(base, train_tokens=4096),
                replace(base, steps=100), replace(base, lr=0.02), replace(base, batch_size=1024),
                replace(base, window=256), replace(base, layers=(0, 1))]
    stems = [v.default_stem() for v in variants]
    assert len(set(stems)) == len(stems), stems
