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
        assert torch.equal(a.rotation, b.rotation) and torch.equal(a.mean, b.mean) and torch.equal(a.basis, b.basis)
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
    with pytest.raises(ArtifactError, match="layer 1: rotation must be orthogonal"):
        load_calibration(tmp_path / "art")
    meta["heads"][0] = 3
    mpath.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"layer0.mean has shape \(2, 16\), expected \(3, 16\)"):
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
