"""The HTML report in a real browser: headless Chromium loads it and every plot image decodes.

Skipped where Chromium is not installed (``/usr/bin/chromium`` or ``chromium`` on PATH).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sim.report import RunRecord, write_report
from sim.runner import run_scenario
from sim.scenario import scenario_from_mapping


def _chromium() -> str | None:
    for c in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        p = shutil.which(c)
        if p:
            return p
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)"
)

# Marks the result of the image check in the DOM once the page (and its images) have loaded.
CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, bad = [];
  for (var i = 0; i < imgs.length; i++) {
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) bad.push(imgs[i].getAttribute('src'));
  }
  var el = document.createElement('div');
  el.id = 'vigil-image-check';
  el.setAttribute('data-total', String(imgs.length));
  el.setAttribute('data-broken', bad.join('|'));
  document.body.appendChild(el);
});
</script>"""

SCENARIO: dict[str, Any] = {
    "name": "browser <check> & 'quotes'",
    "duration_s": 3.0,
    "world": {"ego": {"speed": 10.0}, "actors": [
        {"id": 1, "kind": "vehicle", "position": [30.0, 0.0],
         "motion": {"pattern": "constant_velocity", "velocity": [10.0, 0.0]}}]},
    "sensors": [{"kind": "camera", "channel": "camera"},
                {"kind": "radar", "channel": "radar", "clutter_rate": 0.2}],
    "supervisor": {"channels": [{"name": "camera", "kind": "camera", "role": "primary"},
                                {"name": "radar", "kind": "radar", "role": "redundant"}]},
    "faults": [{"kind": "dropout", "channel": "radar", "start": {"at": 1.0}}],
    "expectations": [{"kind": "max_silent_failure_s"},
                     {"kind": "state_by", "t": 0.5, "state": "DEGRADED"}],
}


def _dump_dom(page: Path, profile: Path) -> str:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
        page.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _check(page_html: Path, profile: Path) -> tuple[int, list[str]]:
    probe = page_html.with_name("_image_check.html")
    probe.write_text(page_html.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"),
                     encoding="utf-8")
    dom = _dump_dom(probe, profile)
    m = re.search(r'<div id="vigil-image-check" data-total="(\d+)" data-broken="([^"]*)"', dom)
    assert m is not None, "the page did not finish loading in the browser"
    return int(m.group(1)), [s for s in m.group(2).split("|") if s]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = scenario_from_mapping(copy.deepcopy(SCENARIO))
    rec = RunRecord.of(run_scenario(cfg), cfg.tolerance)
    out = tmp_path_factory.mktemp("browser") / "report"
    write_report([rec], out, command="vigil run browser.yaml")
    return out


def test_every_image_loads_in_chromium(report: Path, tmp_path: Path) -> None:
    total, broken = _check(report / "index.html", tmp_path / "profile")
    assert total == 2
    assert broken == []


def test_a_missing_plot_is_detected(report: Path, tmp_path: Path) -> None:
    """The check itself can fail: a report folder with a plot removed shows a broken image."""
    copy_dir = tmp_path / "copy"
    shutil.copytree(report, copy_dir)
    victim = next((copy_dir / "plots").glob("*-ground.png"))
    victim.unlink()
    total, broken = _check(copy_dir / "index.html", tmp_path / "profile")
    assert total == 2
    assert broken == [f"plots/{victim.name}"]


def test_page_text_is_escaped_not_markup(report: Path, tmp_path: Path) -> None:
    dom = _dump_dom(report / "index.html", tmp_path / "profile")
    assert "<check>" not in dom  # would be parsed as an element if unescaped
    assert "browser &lt;check&gt; &amp; 'quotes'" in dom
    assert dom.count("<table>") >= 3
