"""The ring graph page: one self-contained HTML document (vis-network inlined, nothing fetched from elsewhere).

Why not pyvis' own page: its template links Bootstrap from a CDN (the graph then fails offline and reaches
out to a third party from an analyst's machine). Only vis-network's JS and CSS are taken from the pyvis
package, inlined. What the page does:

- nodes at the server-side layout (`engine.drawing.graph_layout`) scaled in the page to the frame's size and
  shown at zoom 1, so labels are drawn at their font size (15 px) on first view, whatever the frame's width;
- a legend inside the graph (risk colours, node shapes, edge kinds);
- funding edges drawn dashed; accounts funding two or more members are square "funder" nodes;
- a click selects a node and shows its details in a panel inside the frame (no Streamlit rerun); the
  panel's "Open wallet page" link (keeping the view's pair and window) is the only navigation.

Ledger strings never become markup: the data is JSON inside <script> with <, > and & escaped, labels are
drawn on a canvas, hover titles are plain text (vis-network 9) and the panel is filled with textContent.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib.resources import files
from urllib.parse import urlencode

import polars as pl

EDGE_COLOURS = {"trade": "#4e79a7", "funding": "#f28e2b"}
LEGEND_RISK = (("#c62828", "risk ≥ 70"), ("#f9a825", "risk 40–69.9"), ("#2e7d32", "risk < 40"), ("#9e9e9e", "unscored"))
FONT_PX = 15
MARGIN_PX = 70


@cache
def _vis_assets() -> tuple[str, str]:
    """(JS, CSS) of vis-network as shipped inside the pyvis package (read once per process)."""
    lib = files("pyvis") / "templates" / "lib" / "vis-9.1.2"
    return (lib / "vis-network.min.js").read_text(encoding="utf-8"), (lib / "vis-network.css").read_text(
        encoding="utf-8"
    )


def risk_colour(score: float | None) -> str:
    """Hex colour of a risk score: grey (unscored), green < 40, amber < 70, red >= 70."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return "#9e9e9e"
    return "#2e7d32" if score < 40 else "#f9a825" if score < 70 else "#c62828"


def wallet_link(wallet: str, *, base: str = "./wallet") -> str:
    """URL of the Wallet page for `wallet` (query parameter, URL-encoded)."""
    return f"{base}?{urlencode({'wallet': wallet})}"


def xlm_text(stroops: int | None) -> str:
    """An XLM volume (given in XLM stroops) as people read it: "volume 1,234.5 XLM"."""
    if stroops is None:
        return "volume – (no XLM leg)"
    return f"volume {stroops / 10_000_000:,.2f} XLM"


def _script_json(value) -> str:
    """JSON safe inside a <script> element (no </script>, no markup, no entity)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _short(account: str) -> str:
    return account if len(account) <= 12 else f"{account[:5]}…{account[-4:]}"


def graph_data(nodes: pl.DataFrame, edges: pl.DataFrame, positions: pl.DataFrame, *,
               link_base: str = "./wallet") -> dict:  # fmt: skip
    """The vis-network nodes and edges (plain data, no markup).

    nodes: [account_id, ring_id, max_score]; edges: [source, target, kind, n, volume (XLM stroops)];
    positions: [account_id, x, y] within [-1000, 1000]; sent within [-1, 1], the page scales them to its frame."""
    funders = set(edges.filter(pl.col("kind") == "funding").get_column("source").to_list())
    out_nodes = []
    for row in nodes.join(positions, on="account_id", how="left").iter_rows(named=True):
        account, score, member = row["account_id"], row["max_score"], row["ring_id"] is not None
        role = "ring member" if member else "funder of members" if account in funders else "counterparty"
        out_nodes.append({
            "id": account, "x": float(row["x"] or 0) / 1000, "y": float(row["y"] or 0) / 1000,
            "label": _short(account) if member or role == "funder of members" else "",
            "title": f"{account}\nrisk: {'–' if score is None else f'{score:.1f}'}\n{role}",
            "shape": "diamond" if member else "square" if role == "funder of members" else "dot",
            "size": 14 if member else 11 if role == "funder of members" else 8, "color": risk_colour(score),
            "info": {"account": account, "risk": "–" if score is None else f"{score:.1f}", "role": role,
                     "ring": row["ring_id"] or "–", "link": wallet_link(account, base=link_base)},
        })  # fmt: skip
    known = set(nodes.get_column("account_id").to_list())
    out_edges = [{
        "from": row["source"], "to": row["target"], "dashes": row["kind"] == "funding", "arrows": "to",
        "color": EDGE_COLOURS.get(row["kind"], "#999999"), "width": 1 + min(5.0, float(row["n"]) ** 0.5 / 2),
        "title": f"{row['kind']}: {int(row['n'])} ({xlm_text(row['volume'])})",
    } for row in edges.iter_rows(named=True) if row["source"] in known and row["target"] in known]  # fmt: skip
    return {"nodes": out_nodes, "edges": out_edges}


def ring_graph_html(nodes: pl.DataFrame, edges: pl.DataFrame, positions: pl.DataFrame, *,
                    link_base: str = "./wallet", height: int = 560) -> str:  # fmt: skip
    """A self-contained HTML page of a ring neighbourhood (see the module docstring)."""
    js, css = _vis_assets()
    data = graph_data(nodes, edges, positions, link_base=link_base)
    legend = " ".join(f'<span class="sw" style="background:{c}"></span>{t}' for c, t in LEGEND_RISK)
    return _PAGE.format(css=css, js=js, height=height, font=FONT_PX, margin=MARGIN_PX, data=_script_json(data),
                        legend=legend)  # fmt: skip


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>{css}
body{{margin:0;font:12px system-ui,sans-serif;color:#222}} #graph{{width:100%;height:{height}px}}
.box{{position:absolute;background:rgba(255,255,255,.94);border:1px solid #ccc;border-radius:6px;padding:6px 9px}}
#legend{{bottom:8px;left:8px;line-height:1.6}} #info{{top:8px;right:8px;max-width:330px;display:none}}
.sw{{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 6px;vertical-align:-1px}}
.ln{{display:inline-block;width:26px;margin-right:6px;vertical-align:3px;border-top:2px solid}}
#info b{{display:block;word-break:break-all;margin-bottom:3px}} #info a{{color:#1565c0}}
#wrap{{position:relative;height:{height}px}}
</style></head><body><div id="wrap"><div id="graph"></div>
<div id="legend" class="box"><div>{legend}</div><div>◆ ring member · ■ funder of members · ● counterparty</div>
<div><span class="ln" style="border-color:#4e79a7"></span>trades (arrow: seller → buyer)
<span class="ln" style="border-color:#f28e2b;border-top-style:dashed;margin-left:10px"></span>funding
<span style="color:#666;margin-left:10px">click a wallet for its details</span></div></div>
<div id="info" class="box"><b id="i-account"></b><div id="i-line"></div>
<a id="i-link" target="_top">Open wallet page</a></div></div>
<script>{js}</script><script>(function(){{
var data={data};
var box=document.getElementById('graph'),sx=Math.max(box.clientWidth/2-{margin},60);
var sy=Math.max(box.clientHeight/2-1.5*{margin},60),up=-{margin}/2;  // the legend takes the bottom edge
var mx=1e-9,my=1e-9;data.nodes.forEach(function(n){{mx=Math.max(mx,Math.abs(n.x));my=Math.max(my,Math.abs(n.y));}});
mx=Math.max(mx,0.05);my=Math.max(my,0.05);  // each axis fills the frame: zoom 1 shows every wallet at full size
data.nodes.forEach(function(n){{n.x*=sx/mx;n.y=n.y*sy/my+up;}});
var network=new vis.Network(document.getElementById('graph'),
  {{nodes:new vis.DataSet(data.nodes),edges:new vis.DataSet(data.edges)}},
  {{physics:false,nodes:{{font:{{size:{font},face:'system-ui'}},borderWidth:1}},
    edges:{{smooth:false,arrows:{{to:{{scaleFactor:0.5}}}}}},interaction:{{hover:true,tooltipDelay:150}}}});
network.moveTo({{position:{{x:0,y:0}},scale:1}});
function withFilters(link){{var q;try{{q=new URLSearchParams(window.parent.location.search);}}
  catch(e){{q=new URLSearchParams();}}var own=new URLSearchParams(link.split('?')[1]);
  ['pair','window'].forEach(function(k){{if(q.get(k)){{own.set(k,q.get(k));}}}});return link.split('?')[0]+'?'+own;}}
var byId={{}};data.nodes.forEach(function(n){{byId[n.id]=n.info;}});
network.on('click',function(p){{var box=document.getElementById('info');
  if(!p.nodes.length){{box.style.display='none';return;}}var i=byId[p.nodes[0]];
  document.getElementById('i-account').textContent=i.account;
  document.getElementById('i-line').textContent='risk '+i.risk+' · '+i.role+' · ring '+i.ring;
  document.getElementById('i-link').setAttribute('href',withFilters(i.link));box.style.display='block';}});
window.ledgerlensNetwork=network;}})();</script></body></html>"""
