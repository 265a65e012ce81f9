"""report.html in a real browser: a backtest on the GOOG data backtesting.py ships, its report
opened from disk in headless Chromium with the network cut off. It must draw its charts (Bokeh
canvases of non-zero size, with something on them), show the metrics and every trade, log no
error, fetch nothing, and survive a zoom (the callbacks that refit each panel's y axis).

Needs the `playwright` package (the `test` extra) and Debian's `chromium` (ops/test.sh installs
it); never a browser downloaded by playwright. Without them, the test is skipped, saying why.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from support.backtests import run_bar_files
from trading_engine.app.backtest.report import write_outputs
from trading_engine.app.backtest.results import compute_metrics

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "no chromium at /usr/bin/chromium (apt-get install chromium; ops/test.sh does it)",
        allow_module_level=True,
    )

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# every Bokeh canvas, inside the shadow roots Bokeh renders into: its size on the page
CANVASES_JS = """() => {
  const found = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot);
      if (el.classList && el.classList.contains('bk-Canvas')) {
        const box = el.getBoundingClientRect();
        found.push([box.width, box.height]);
      }
    }
  };
  walk(document);
  return found;
}"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], int]:
    """The output folder of a 10/20 moving-average cross on GOOG, its metrics, its trades."""
    from backtesting.test import GOOG

    folder = tmp_path_factory.mktemp("goog")
    GOOG.to_csv(folder / "GOOG.csv")
    result = run_bar_files(
        [folder / "GOOG.csv"], "moving_average_cross", {"fast_window": 10, "slow_window": 20}
    )
    assert len(result.trades) == 93
    assert len(result.open_trades) == 1
    metrics = compute_metrics(result)
    write_outputs(result, metrics, folder / "out")
    return folder / "out", metrics, len(result.trades) + len(result.open_trades)


def test_report_renders_in_a_headless_browser(
    report: tuple[Path, dict[str, Any], int], tmp_path: Path
) -> None:
    from PIL import Image

    out, metrics, trades = report
    problems: list[str] = []
    fetched: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on(
                "console",
                lambda m: (
                    problems.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

            def offline(route: Any) -> None:
                if route.request.url.startswith(("file:", "data:", "blob:")):
                    route.continue_()
                else:
                    fetched.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.goto((out / "report.html").as_uri())
            page.wait_for_function("() => window.Bokeh !== undefined", timeout=30_000)
            page.wait_for_selector(".bk-Canvas", state="attached", timeout=30_000)
            page.wait_for_timeout(1000)  # the document settles (BokehJS logs "idle")

            canvases = page.evaluate(CANVASES_JS)
            # equity, drawdown, trade PnL, price, volume
            assert len(canvases) >= 5, canvases
            assert all(width > 600 and height > 80 for width, height in canvases), canvases
            assert page.locator("#metrics tr").count() == len(metrics)
            assert page.locator("#trades tbody tr").count() == trades
            assert page.locator("#trades tr.open").count() == 1
            assert "not in the trade statistics" in page.locator("#trades-note").inner_text()

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            chart = page.locator("#charts").screenshot()

            # zoom into the price panel: every panel's y-axis refit runs in the browser
            box = page.locator("#charts").bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.65)
            for _ in range(6):
                page.mouse.wheel(0, -300)
                page.wait_for_timeout(80)
            page.wait_for_timeout(500)
            zoomed = page.locator("#charts").screenshot()
            page.screenshot(path=str(tmp_path / "report-zoomed.png"))
        finally:
            browser.close()

    assert problems == []
    assert fetched == []
    assert shot.stat().st_size > 50_000
    image = Image.open(io.BytesIO(chart)).convert("RGB")
    assert image.width > 1000
    assert image.height > 900
    assert len(image.getcolors(1 << 24) or []) > 200  # drawn charts, not blank panels
    assert zoomed != chart  # the zoom changed the picture
