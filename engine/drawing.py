"""What the workbench pages draw, computed without streamlit: layouts, graph HTML, decks, colours.

- `graph_layout`: node positions computed server-side (igraph Fruchterman-Reingold
  from seeded initial positions), so the browser never runs physics.
- the ring graph page itself is engine.ring_graph (vis-network, fixed positions from here).
- `market_deck`: a pydeck deck (scatter + line layers, orthographic view, no map
  tiles) of the whole market over a server-side layout.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import polars as pl

from engine.benford import expected_proportions

log = logging.getLogger(__name__)

# -- colours and layout ----------------------------------------------------------------------


def risk_rgb(scores: np.ndarray) -> np.ndarray:
    """(n, 4) uint8 RGBA colours for scores (NaN = unscored grey)."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.tile(np.array([158, 158, 158, 140], dtype=np.uint8), (len(s), 1))
    out[s < 40] = (46, 125, 50, 200)
    out[(s >= 40) & (s < 70)] = (249, 168, 37, 220)
    out[s >= 70] = (198, 40, 40, 240)
    return out


def graph_layout(
    nodes: list[str], edges: pl.DataFrame, *, seed: int = 42, source: str = "source", target: str = "target",
    weight: str | None = None, iterations: int = 300, scale: float = 1000.0,
) -> pl.DataFrame:
    """Positions of `nodes` for the edges (unknown endpoints ignored), deterministic for a seed.

    Shapes: -> [account_id: str, x: f64, y: f64], in the order of `nodes`, within [-scale, scale].
    """
    import igraph

    n = len(nodes)
    if n == 0:
        return pl.DataFrame(schema={"account_id": pl.String, "x": pl.Float64, "y": pl.Float64})
    index = pl.DataFrame({"account_id": nodes}).with_row_index("i")
    e = edges.join(index.rename({"account_id": source, "i": "a"}), on=source).join(
        index.rename({"account_id": target, "i": "b"}), on=target
    ).filter(pl.col("a") != pl.col("b"))
    g = igraph.Graph(n=n, edges=list(zip(e.get_column("a").to_list(), e.get_column("b").to_list(), strict=True)))
    start = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 2)).tolist()
    weights = e.get_column(weight).cast(pl.Float64).log1p().to_list() if weight and g.ecount() else None
    igraph.set_random_number_generator(random.Random(seed))
    try:
        xy = np.array(g.layout_fruchterman_reingold(seed=start, weights=weights, niter=iterations,
                                                    grid="auto" if n > 1000 else "nogrid").coords)
    finally:
        igraph.set_random_number_generator(random)
    xy = xy - xy.mean(axis=0)
    span = float(np.abs(xy).max()) or 1.0
    xy = xy / span * scale
    return pl.DataFrame({"account_id": nodes, "x": xy[:, 0], "y": xy[:, 1]})


# -- pydeck market view --------------------------------------------------------------------------


def market_deck(nodes: pl.DataFrame, edges: pl.DataFrame, positions: pl.DataFrame):
    """deck.gl view of the market: wallets coloured by risk (rings larger), co-trade edges as lines.

    nodes: [account_id, ring_id, max_score]; edges: [account_a, account_b, n_trades]; positions: [account_id, x, y].
    Returns a `pydeck.Deck` (orthographic view, no map tiles). Hover shows the wallet, score and ring.
    """
    import pydeck as pdk

    pts = nodes.join(positions, on="account_id", how="inner")
    rgba = risk_rgb(pts.get_column("max_score").cast(pl.Float64).fill_null(np.nan).to_numpy())
    pts = pts.with_columns(
        colour=pl.Series(rgba.tolist()),
        radius=pl.when(pl.col("ring_id").is_not_null()).then(9.0).otherwise(4.0),
        ring=pl.col("ring_id").fill_null("–"),
        risk=pl.col("max_score").cast(pl.String).fill_null("–"),
    )
    xy = positions.select("account_id", "x", "y")
    lines = edges.join(xy.rename({"account_id": "account_a", "x": "x0", "y": "y0"}), on="account_a").join(
        xy.rename({"account_id": "account_b", "x": "x1", "y": "y1"}), on="account_b"
    ).select(src=pl.concat_list("x0", "y0"), dst=pl.concat_list("x1", "y1"), n_trades="n_trades")
    layers = [
        pdk.Layer("LineLayer", data=lines.to_dicts(), get_source_position="src", get_target_position="dst",
                  get_color=[120, 120, 120, 60], get_width=1, pickable=False),
        pdk.Layer("ScatterplotLayer", id="wallets", data=pts.select("account_id", "ring", "risk", "x", "y", "colour",
                  "radius").to_dicts(), get_position=["x", "y"], get_fill_color="colour", get_radius="radius",
                  radius_units="pixels", pickable=True, auto_highlight=True),
    ]
    view = pdk.View(type="OrthographicView", controller=True)
    state = pdk.ViewState(target=[0, 0, 0], zoom=-1.2, min_zoom=-4, max_zoom=6)
    # pydeck inserts tooltip fields as text via {field}; values are escaped again to be safe
    tooltip = {"text": "{account_id}\nrisk {risk}\nring {ring}"}
    return pdk.Deck(layers=layers, views=[view], initial_view_state=state, map_style=None, tooltip=tooltip)


# -- small display helpers ------------------------------------------------------------------------


def benford_expected(counts: pl.DataFrame) -> pl.DataFrame:
    """First-digit counts with Benford's expected share. Shapes: [digit, n, observed, expected]."""
    total = max(int(counts.get_column("n").sum()), 1)
    return counts.with_columns(
        observed=pl.col("n") / total, expected=pl.Series(expected_proportions("first").tolist())
    )


def units(stroops: int | None) -> float | None:
    """Stroops as asset units (display only)."""
    return None if stroops is None else stroops / 10_000_000


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
