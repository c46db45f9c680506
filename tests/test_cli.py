"""The command line: every codec reaches `perplexity` and `generate`, and bad settings exit non-zero
with a message naming the argument."""

import pytest

from betaspec.cli import main
from betaspec.data.locations import asset_present

needs_smollm2 = pytest.mark.skipif(not (asset_present("smollm2") and asset_present("text")),
                                   reason="SmolLM2 or the text is not fetched (run `betaspec fetch-assets`)")


@needs_smollm2
@pytest.mark.parametrize("args", [
    ["--codec", "transform", "--bits", "2"],
    ["--codec", "kivi", "--bits", "2", "--group", "32", "--flush-block", "32"],
    ["--codec", "turboquant_mse", "--bits", "3"],
    ["--codec", "turboquant_prod", "--bits", "2"],
    ["--codec", "qjl", "--sketch-dim", "128"],
    ["--codec", "transform", "--protect", "1", "--window-keep", "8", "--exact-fp16"],
])
def test_perplexity_runs_every_codec(args, capsys):
    assert main(["perplexity", "--quiet", "--windows", "1", "--window", "48", *args]) == 0
    out = capsys.readouterr().out
    assert "ratio quantized / full precision" in out and "key bits/coordinate" in out


@needs_smollm2
def test_generate_runs_a_peer_codec(capsys):
    assert main(["generate", "--quiet", "--codec", "turboquant_mse", "--bits", "4", "--max-new-tokens", "3"]) == 0
    assert "quantized keys (turboquant" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--codec", "kivi", "--bits", "9"], "bits"),
    (["--codec", "kivi", "--group", "0"], "group"),
    (["--codec", "qjl", "--sketch-dim", "0"], "m must be an integer ≥ 1"),
    (["--codec", "transform", "--bits", "7"], "bits"),
    (["--window-keep", "-3"], "window must be an integer ≥ 0"),
    (["--calibration", "/nonexistent/stem"], "calibration metadata not found"),
    (["--calibration", "/nonexistent/stem", "--bits", "2"], "--bits set the data-free codecs"),
    (["--codec", "transform", "--group", "32"], "--group is kivi's"),
    (["--codec", "kivi", "--sketch-dim", "64"], "unknown setting"),
])
def test_bad_settings_exit_non_zero_naming_the_argument(args, message, capsys):
    assert main(["perplexity", "--quiet", "--windows", "1", "--window", "16", *args]) == 1
    assert message in capsys.readouterr().err


def test_an_unknown_codec_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["perplexity", "--codec", "zip"])
    assert info.value.code == 2
    assert "invalid choice: 'zip'" in capsys.readouterr().err
