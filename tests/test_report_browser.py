"""The report in a real browser: headless Debian Chromium loads index.html from disk, every
figure decodes, every theorem link lands on an anchor that exists in lean.html, no annotation
shows an unfilled placeholder, and a screenshot is taken.

Skipped where Chromium is not installed — except under CI (the `CI` environment variable),
where a missing browser is a failure, so CI cannot skip it silently. `.ci/setup` installs it."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import (
    REPO,
    _cached_lean_pages,
    fake_report,
    real_widgets,
    tiny_real_results,
)

from betaspec.report import explore as explore_mod
from betaspec.report.page import placeholders
from betaspec.study import runner

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]


@pytest.fixture(scope="module")
def browser() -> str:
    """The Chromium executable (looked up before the report is built, so a skip is instant)."""
    return _chromium()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("Chromium is not installed, and CI must run the browser test: .ci/setup installs "
                    "Debian's chromium (apt-get install chromium)")
    pytest.skip("Chromium is not installed (apt-get install chromium); CI fails instead of skipping")


def _run(browser: str, profile: Path, *args: str, timeout: float = 60) -> str:
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\nexit {proc.returncode}\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def browser_report(tmp_path_factory) -> Path:
    """The report of the real widgets on the tiny synthetic study's results when all eleven
    import and compute, else the fake widgets' report — the page machinery is what this test
    is about; test_report.py says which real widget fails."""
    base = tmp_path_factory.getbasetemp()
    real = real_widgets()
    if len(real) == 11 and all(not isinstance(w, str) for w in real.values()):
        results = tiny_real_results(str(base / "tiny-study"))
        if all(isinstance(p, Path) for p in results.values()):
            out = base / "browser-report"
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(runner, "all_widgets", lambda: real)
                mp.setattr(explore_mod, "_lean_pages", _cached_lean_pages)
                explore_mod.build_report(base / "tiny-study" / "results", out, REPO)
            return out
    return fake_report(str(base))


def test_report_renders_in_chromium(browser, browser_report, tmp_path):
    index = browser_report / "index.html"
    expected_images = len(re.findall(r"<img ", index.read_text(encoding="utf-8")))
    assert expected_images >= 1

    dom = _run(browser, tmp_path / "profile1", "--virtual-time-budget=5000", "--dump-dom", index.as_uri())
    # every image decoded (the page's own script records complete && naturalWidth > 0)
    imgs = re.findall(r"<img [^>]*>", dom)
    assert len(imgs) == expected_images
    not_loaded = [i for i in imgs if 'data-loaded="yes"' not in i]
    assert not not_loaded, f"images that did not load: {not_loaded}"
    assert f'data-images="{expected_images}/{expected_images}"' in dom

    # every theorem link lands on an anchor that exists in the rendered lean.html
    lean_dom = _run(browser, tmp_path / "profile2", "--dump-dom", (browser_report / "lean.html").as_uri())
    ids = set(re.findall(r'\bid="([^"]+)"', lean_dom))
    links = re.findall(r'href="lean\.html#([^"]+)"', dom)
    assert links, "no theorem links on the page"
    missing = sorted(set(links) - ids)
    assert not missing, f"theorem links without an anchor in lean.html: {missing}"

    # no annotation line holds an unfilled placeholder
    lines = [html.unescape(re.sub(r"<[^>]+>", "", m))
             for m in re.findall(r'<li class="(?:what|trend|outlier)">(.*?)</li>', dom, re.S)]
    assert lines
    bad = [x for x in lines if placeholders(x)]
    assert not bad, f"annotations with placeholders: {bad}"

    # a screenshot of the top of the page: written, and not blank
    shot = tmp_path / "report.png"
    _run(browser, tmp_path / "profile3", f"--screenshot={shot}", "--window-size=1280,2200",
         "--virtual-time-budget=5000", index.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2200)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100, "the screenshot is blank"
    keep = os.environ.get("BETASPEC_SCREENSHOT_DIR")
    if keep:
        shutil.copy2(shot, Path(keep) / "report.png")
