"""A simulated Stellar market with labelled manipulation, and a fraud injector.

`generate_market(out_dir, seed=, scale=, days=, family=FamilyConfig(...))` writes
Horizon-shaped trades.jsonl / operations.jsonl with labels.csv and meta.json, one
market of a randomised family (engine.synthetic.family);
`inject_fraud(...)` plants labelled structures into an existing trades export.
"""

from engine.synthetic.family import FUNDING, PATTERNS, FamilyConfig  # noqa: F401
from engine.synthetic.inject import InjectSummary, inject_fraud  # noqa: F401
from engine.synthetic.market import MarketSummary, generate_market  # noqa: F401
