"""A simulated Stellar market with labelled manipulation, and a fraud injector.

`generate_market(out_dir, seed=, scale=, days=)` writes Horizon-shaped
trades.jsonl / operations.jsonl with labels.csv and meta.json;
`inject_fraud(...)` plants labelled structures into an existing trades export.
"""

from engine.synthetic.inject import InjectSummary, inject_fraud  # noqa: F401
from engine.synthetic.market import MarketSummary, generate_market  # noqa: F401
