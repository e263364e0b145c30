"""The ring graph page in Chromium: served whole (nothing fetched from elsewhere), legible labels, a legend
inside the graph, funding edges from a shared funder, and a click that selects without navigating."""

from __future__ import annotations

import polars as pl
import pytest

from engine.drawing import graph_layout
from engine.ring_graph import FONT_PX, ring_graph_html
from tests.app.chromium import ARTIFACTS, browser_page, off_loopback
from tests.factories import account

pytestmark = pytest.mark.browser


def _ring() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    members, funder, outsider = [account(i) for i in range(1, 5)], account(50), account(60)
    nodes = pl.DataFrame({"account_id": members + [funder, outsider], "ring_id": ["ring_a"] * 4 + [None, None],
                          "max_score": [91, 75, 55, None, None, 12]})  # fmt: skip
    trades = [(members[i], members[(i + 1) % 4], "trade", 12, 5 * 10**9) for i in range(4)]
    trades.append((members[0], outsider, "trade", 1, 10**7))
    funding = [(funder, m, "funding", 1, 2 * 10**7) for m in members]
    edges = pl.DataFrame(trades + funding, schema=["source", "target", "kind", "n", "volume"], orient="row")
    return nodes, edges, graph_layout(nodes.get_column("account_id").to_list(), edges, seed=7, weight="n")


def test_the_ring_graph_is_legible_self_contained_and_selects_in_place():
    nodes, edges, pos = _ring()
    html = ring_graph_html(nodes, edges, pos)
    with browser_page() as page:
        page.set_viewport_size({"width": 900, "height": 700})  # narrower than the layout was made for
        page.set_content(html)
        page.wait_for_function("window.ledgerlensNetwork !== undefined")
        assert off_loopback(page.requests) == []
        assert page.evaluate("window.ledgerlensNetwork.getScale()") == pytest.approx(1.0)  # labels at FONT_PX
        legend = page.locator("#legend")
        assert "risk ≥ 70" in legend.inner_text() and "funding" in legend.inner_text()
        box = legend.bounding_box()
        assert box["x"] >= 0 and box["y"] + box["height"] <= 560  # inside the graph's frame
        spots = page.evaluate("Object.values(window.ledgerlensNetwork.getPositions())"
                              ".map(p => window.ledgerlensNetwork.canvasToDOM(p))")
        assert all(0 < p["x"] < 900 and 0 < p["y"] < 560 for p in spots)  # every wallet in view at zoom 1
        drawn = page.evaluate("window.ledgerlensNetwork.body.data.edges.get().filter(e => e.dashes).length")
        assert drawn == 4  # the shared funder's four funding edges
        funder = account(50)
        xy = page.evaluate(f"window.ledgerlensNetwork.canvasToDOM(window.ledgerlensNetwork.getPosition('{funder}'))")
        url_before = page.url
        page.mouse.click(xy["x"], xy["y"])
        page.locator("#info").wait_for(state="visible")
        assert funder in page.locator("#i-account").inner_text()
        assert "funder of members" in page.locator("#i-line").inner_text()
        assert page.url == url_before  # selecting is not navigating
        assert page.locator("#i-link").get_attribute("href") == f"./wallet?wallet={funder}"
        page.screenshot(path=str(ARTIFACTS / "graph-ring.png"))
    assert FONT_PX >= 14
