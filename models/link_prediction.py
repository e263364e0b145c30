"""Temporal link prediction on snapshot edges: GNN vs EdgeBank vs common neighbours / Adamic-Adar.

Split by time, never at random. With edges sorted by timestamp and cut at edge-count
quantiles (defaults: train messages 0-60%, train targets 60-70%, validation targets
70-80%, test targets 80-100% = the "future"; context = the first 80%):

    phase  message-passing graph   targets (positives)
    train  edges < t_train         distinct (src, dst) pairs in [t_train, t_val)
    val    edges < t_val           pairs in [t_val, t_test)
    test   edges < t_test          pairs in [t_test, end]

`check_leakage` verifies that no edge at or after a phase's target start is in its
message graph (nor in the node features, which are built from the messages only).

Negatives, reported separately because random ones are easy (Poursafaei et al. 2022):
- random: each positive (s, d) with d replaced by a uniformly drawn node (not a positive pair);
- historical: pairs seen in the message graph that do not recur in the target window.

Methods in one table: the GNN (encoder + decoder, Adam, early stopping on validation
loss), EdgeBank (unlimited memory: 1 if the pair was seen before), common neighbours
and Adamic-Adar on the undirected message graph. Predicted positive: GNN probability
>= 0.5; EdgeBank seen; CN / AA score > 0.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from engine.graph.pyg import message_edge_index, structural_features
from storage.errors import BadInput

EpochCallback = Callable[..., None]  # on_epoch(epoch=, epochs=, train_loss=, val_loss=)
BASELINES = ("edgebank", "common_neighbours", "adamic_adar")
NEGATIVES = ("random", "historical")


@dataclass(frozen=True)
class LinkPredConfig:
    """Every parameter of a link-prediction run (what a benchmark config holds under `model`)."""

    encoder: str = "sage"
    decoder: str = "mlp"
    hidden_channels: int = 64
    out_channels: int = 32
    num_layers: int = 2
    dropout: float = 0.0
    lr: float = 0.01
    weight_decay: float = 0.0
    epochs: int = 100
    patience: int = 10
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    train_fraction: float = 0.1  # target edges of the training phase
    hard_negative_share: float = 0.5  # share of training negatives drawn from history
    seed: int = 42

    def as_dict(self) -> dict:
        return asdict(self)


class LeakageError(AssertionError):
    """A message-passing graph holds an edge of its own target window (a bug, never data)."""


@dataclass(frozen=True)
class Phase:
    """One phase of the temporal split: its message graph and its labelled pairs ((2, n) int64)."""

    name: str
    messages: pl.DataFrame
    target_start: object  # datetime: first target timestamp allowed
    target_edges: pl.DataFrame
    positives: np.ndarray
    random_negatives: np.ndarray
    historical_negatives: np.ndarray


@dataclass(frozen=True)
class LinkPredResult:
    table: pl.DataFrame  # method, negatives, auc, ap, precision, recall, f1, n_pos, n_neg
    history: pl.DataFrame  # epoch, train_loss, val_loss
    leakage: pl.DataFrame  # phase, n_messages, last_message, target_start, n_leaked, ok
    split: dict = field(default_factory=dict)
    best_epoch: int = 0
    verdict: str = ""
    seconds: float = 0.0


# -- split --------------------------------------------------------------------------------


def _pairs(edges: pl.DataFrame) -> np.ndarray:
    """Distinct directed (src_id, dst_id) pairs without self-loops, (2, n) int64 sorted."""
    p = edges.filter(pl.col("src_id") != pl.col("dst_id")).select("src_id", "dst_id").unique().sort("src_id", "dst_id")
    return p.to_numpy().T.astype(np.int64).reshape(2, -1)


def _codes(pairs: np.ndarray, n: int) -> np.ndarray:
    return pairs[0] * n + pairs[1]


def random_negatives(positives: np.ndarray, *, num_nodes: int, rng: np.random.Generator) -> np.ndarray:
    """Each positive with its destination replaced by a random node; never a positive pair or a self-loop."""
    src = positives[0].copy()
    dst = rng.integers(0, num_nodes, src.size)
    bad = np.isin(src * num_nodes + dst, _codes(positives, num_nodes)) | (src == dst)
    for _ in range(50):  # resample the few collisions; dense tiny graphs may keep some, dropped below
        if not bad.any():
            break
        dst[bad] = rng.integers(0, num_nodes, int(bad.sum()))
        bad = np.isin(src * num_nodes + dst, _codes(positives, num_nodes)) | (src == dst)
    return np.stack([src[~bad], dst[~bad]])


def historical_negatives(history: np.ndarray, positives: np.ndarray, *, num_nodes: int, n: int,
                         rng: np.random.Generator) -> np.ndarray:
    """Up to `n` pairs seen in the history that do not recur among `positives` (uniform, no repeats)."""
    pool = history[:, ~np.isin(_codes(history, num_nodes), _codes(positives, num_nodes))]
    take = rng.permutation(pool.shape[1])[: min(n, pool.shape[1])]
    return pool[:, np.sort(take)]


def _cut(ts: pl.Series, q: float):
    """The timestamp at quantile q of the sorted edge times (edges < it are 'before')."""
    return ts[min(int(q * ts.len()), ts.len() - 1)]


def _phase(name, edges, start, stop, *, num_nodes, rng) -> Phase:
    t = pl.col("timestamp")
    messages = edges.filter(t < start)
    targets = edges.filter((t >= start) & (t < stop)) if stop is not None else edges.filter(t >= start)
    pos = _pairs(targets)
    if pos.shape[1] == 0 or messages.height == 0:
        raise BadInput(f"the {name} phase has no target pair or no message edge: the graph is too small or its "
                       "edges share one timestamp; use a longer window or more data")
    hist = historical_negatives(_pairs(messages), pos, num_nodes=num_nodes, n=pos.shape[1], rng=rng)
    neg = random_negatives(pos, num_nodes=num_nodes, rng=rng)
    return Phase(name, messages, start, targets, pos, neg, hist)


def temporal_split(edges: pl.DataFrame, *, num_nodes: int, config: LinkPredConfig = LinkPredConfig()) -> list[Phase]:
    """The train / val / test phases (module docstring); edges carry src_id, dst_id, timestamp, amount, kind."""
    if edges.height < 10:
        raise BadInput(f"{edges.height} edges are too few for temporal link prediction (need at least 10)")
    ts = edges.get_column("timestamp").sort()
    q_test = 1 - config.test_fraction
    q_val = q_test - config.val_fraction
    q_train = q_val - config.train_fraction
    if not 0 < q_train < q_val < q_test < 1:
        raise BadInput(f"fractions leave no training messages: {config.test_fraction=}, {config.val_fraction=}, "
                       f"{config.train_fraction=}")
    t_train, t_val, t_test = (_cut(ts, q) for q in (q_train, q_val, q_test))
    rng = np.random.default_rng(config.seed)
    return [
        _phase("train", edges, t_train, t_val, num_nodes=num_nodes, rng=rng),
        _phase("val", edges, t_val, t_test, num_nodes=num_nodes, rng=rng),
        _phase("test", edges, t_test, None, num_nodes=num_nodes, rng=rng),
    ]


def check_leakage(phases: list[Phase]) -> pl.DataFrame:
    """Per phase: message edges at or after the target start (must be 0) and target edges before it.

    Shapes: -> [phase, n_messages, last_message, target_start, n_leaked, ok]. Raises LeakageError on any leak."""
    rows = []
    for ph in phases:
        leaked = ph.messages.filter(pl.col("timestamp") >= ph.target_start).height
        early = ph.target_edges.filter(pl.col("timestamp") < ph.target_start).height
        rows.append({"phase": ph.name, "n_messages": ph.messages.height,
                     "last_message": ph.messages.get_column("timestamp").max(), "target_start": ph.target_start,
                     "n_leaked": leaked + early, "ok": leaked + early == 0})  # fmt: skip
    report = pl.DataFrame(rows)
    if not report.get_column("ok").all():
        raise LeakageError(f"future edges in a message-passing graph:\n{report}")
    return report


# -- baselines and metrics -------------------------------------------------------------------


def _adjacency(messages: pl.DataFrame, num_nodes: int) -> sp.csr_matrix:
    p = _pairs(messages)
    a = sp.coo_matrix((np.ones(p.shape[1]), (p[0], p[1])), shape=(num_nodes, num_nodes)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    return a


def baseline_scores(messages: pl.DataFrame, pairs: np.ndarray, *, num_nodes: int) -> dict[str, np.ndarray]:
    """Scores of `pairs` ((2, n)) by each of BASELINES from the message graph alone."""
    seen = np.isin(_codes(pairs, num_nodes), _codes(_pairs(messages), num_nodes)).astype(np.float64)
    a = _adjacency(messages, num_nodes)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_log = np.where(deg > 1, 1.0 / np.log(np.maximum(deg, 2)), 0.0)
    rows_u, rows_v = a[pairs[0]], a[pairs[1]]
    cn = np.asarray(rows_u.multiply(rows_v).sum(axis=1)).ravel()
    aa = np.asarray(rows_u.multiply(rows_v).multiply(inv_log[None, :]).sum(axis=1)).ravel()
    return {"edgebank": seen, "common_neighbours": cn, "adamic_adar": aa}


def link_metrics(y: np.ndarray, score: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """AUC, average precision (from the scores), precision, recall, F1 (from the 0/1 predictions)."""
    both = np.unique(y).size == 2
    return {
        "auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "ap": float(average_precision_score(y, score)) if both else float("nan"),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
    }


def _rows(method: str, scorer: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], test: Phase) -> list[dict]:
    """Metric rows of one method against each negative kind (scorer: pairs -> (scores, predicted 0/1))."""
    out = []
    pos_s, pos_p = scorer(test.positives)
    for kind, neg in (("random", test.random_negatives), ("historical", test.historical_negatives)):
        neg_s, neg_p = scorer(neg)
        y = np.r_[np.ones(pos_s.size), np.zeros(neg_s.size)]
        m = link_metrics(y, np.r_[pos_s, neg_s], np.r_[pos_p, neg_p])
        out.append({"method": method, "negatives": kind, **m, "n_pos": int(pos_s.size), "n_neg": int(neg_s.size)})
    return out


def baseline_rows(test: Phase, *, num_nodes: int) -> list[dict]:
    rows = []
    for name in BASELINES:
        def scorer(pairs, name=name):
            s = baseline_scores(test.messages, pairs, num_nodes=num_nodes)[name]
            return s, (s > 0).astype(int)

        rows += _rows(name, scorer, test)
    return rows


# -- the GNN ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    """Tensors of one phase: standardised node features and the undirected message edge_index."""

    x: object
    edge_index: object


def _inputs(phase: Phase, num_nodes: int) -> _Inputs:
    import torch

    from models.gnn import standardize  # torch, imported only when a GNN runs

    x = standardize(structural_features(phase.messages, num_nodes=num_nodes))
    return _Inputs(torch.as_tensor(x), torch.as_tensor(message_edge_index(phase.messages)))


def _labelled(pos: np.ndarray, neg: np.ndarray):
    import torch

    pairs = torch.as_tensor(np.concatenate([pos, neg], axis=1))
    y = torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])])
    return pairs, y


def _train_negatives(train: Phase, *, num_nodes: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Fresh negatives for one epoch: random ones, with `share` of them swapped for historical ones."""
    neg = random_negatives(train.positives, num_nodes=num_nodes, rng=rng)
    n_hard = min(int(share * neg.shape[1]), train.historical_negatives.shape[1])
    if n_hard == 0:
        return neg
    hard = train.historical_negatives[:, rng.permutation(train.historical_negatives.shape[1])[:n_hard]]
    return np.concatenate([neg[:, n_hard:], hard], axis=1)


def _epoch(model, opt, inp: _Inputs, pairs, y) -> float:
    import torch.nn.functional as F

    model.train()
    opt.zero_grad()
    loss = F.binary_cross_entropy_with_logits(model(inp.x, inp.edge_index, pairs), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _val_loss(model, inp: _Inputs, pairs, y) -> float:
    import torch
    import torch.nn.functional as F

    model.eval()
    with torch.no_grad():
        return float(F.binary_cross_entropy_with_logits(model(inp.x, inp.edge_index, pairs), y))


def train_gnn(phases: list[Phase], *, num_nodes: int, config: LinkPredConfig,
              on_epoch: EpochCallback | None = None) -> tuple[object, pl.DataFrame, int]:
    """Fit encoder + decoder on the train phase, early-stopped on validation loss.

    Returns (model with the best validation state, history [epoch, train_loss, val_loss], best epoch)."""
    import torch

    from models.gnn import build_link_model, seed_torch

    seed_torch(config.seed)
    train, val = phases[0], phases[1]
    tr_in, va_in = _inputs(train, num_nodes), _inputs(val, num_nodes)
    model = build_link_model(config.encoder, in_channels=tr_in.x.shape[1], hidden_channels=config.hidden_channels,
                             out_channels=config.out_channels, num_layers=config.num_layers, decoder=config.decoder,
                             dropout=config.dropout)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    va_pairs, va_y = _labelled(val.positives, np.concatenate([val.random_negatives, val.historical_negatives], 1))
    rng = np.random.default_rng(config.seed + 1)
    history, best, best_state, waited = [], (float("inf"), 0), None, 0
    for epoch in range(1, config.epochs + 1):
        neg = _train_negatives(train, num_nodes=num_nodes, share=config.hard_negative_share, rng=rng)
        train_loss = _epoch(model, opt, tr_in, *_labelled(train.positives, neg))
        val_loss = _val_loss(model, va_in, va_pairs, va_y)
        history.append((epoch, train_loss, val_loss))
        if on_epoch is not None:
            on_epoch(epoch=epoch, epochs=config.epochs, train_loss=train_loss, val_loss=val_loss)
        if val_loss < best[0] - 1e-6:
            best, best_state, waited = (val_loss, epoch), copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    frame = pl.DataFrame(history, schema={"epoch": pl.Int64, "train_loss": pl.Float64, "val_loss": pl.Float64},
                         orient="row")  # fmt: skip
    return model, frame, best[1]


def gnn_rows(model, test: Phase, *, num_nodes: int, name: str) -> list[dict]:
    """Metric rows of a trained model on the test phase (message graph = every edge before the test cutoff)."""
    import torch

    inp = _inputs(test, num_nodes)
    model.eval()
    with torch.no_grad():
        z = model.encoder(inp.x, inp.edge_index)

    def scorer(pairs):
        with torch.no_grad():
            p = torch.sigmoid(model.decoder(z, torch.as_tensor(pairs))).numpy().astype(np.float64)
        return p, (p >= 0.5).astype(int)

    return _rows(name, scorer, test)


# -- the whole run ------------------------------------------------------------------------------


def verdict(table: pl.DataFrame, *, gnn: str) -> str:
    """One sentence per negative kind: does the GNN beat every baseline on AUC and AP?"""
    parts = []
    for kind in NEGATIVES:
        rows = table.filter(pl.col("negatives") == kind)
        g = rows.filter(pl.col("method") == gnn)
        base = rows.filter(pl.col("method").is_in(BASELINES))
        if g.height == 0 or base.height == 0:
            continue
        best = base.sort("auc", descending=True, nulls_last=True).row(0, named=True)
        auc, ap = g.item(0, "auc"), g.item(0, "ap")
        beats = auc > best["auc"] and ap > base.get_column("ap").max()
        word = "beats" if beats else "does NOT beat"
        parts.append(f"{kind} negatives: {gnn} {word} the baselines (AUC {auc:.3f} vs {best['method']} "
                     f"{best['auc']:.3f}; AP {ap:.3f} vs best {base.get_column('ap').max():.3f})")
    return "; ".join(parts)


def _split_summary(phases: list[Phase], num_nodes: int) -> dict:
    out = {"num_nodes": num_nodes}
    for ph in phases:
        out[ph.name] = {"target_start": ph.target_start.isoformat(), "n_messages": ph.messages.height,
                        "n_positives": int(ph.positives.shape[1]),
                        "n_random_negatives": int(ph.random_negatives.shape[1]),
                        "n_historical_negatives": int(ph.historical_negatives.shape[1])}  # fmt: skip
    test = phases[-1]
    seen = np.isin(_codes(test.positives, num_nodes), _codes(_pairs(test.messages), num_nodes))
    out["test"]["share_repeated_positives"] = float(seen.mean())
    return out


def run_link_prediction(edges: pl.DataFrame, *, num_nodes: int, config: LinkPredConfig = LinkPredConfig(),
                        on_epoch: EpochCallback | None = None, with_gnn: bool = True) -> LinkPredResult:
    """Split, check leakage, run the baselines and (with_gnn) the GNN; one metrics table.

    edges: src_id, dst_id (node ids < num_nodes), timestamp, amount, kind (a snapshot or the persisted table)."""
    started = time.monotonic()
    phases = temporal_split(edges, num_nodes=num_nodes, config=config)
    leakage = check_leakage(phases)
    rows = baseline_rows(phases[-1], num_nodes=num_nodes)
    history, best_epoch, name = pl.DataFrame(schema={"epoch": pl.Int64, "train_loss": pl.Float64,
                                                     "val_loss": pl.Float64}), 0, f"gnn_{config.encoder}"
    if with_gnn:
        model, history, best_epoch = train_gnn(phases, num_nodes=num_nodes, config=config, on_epoch=on_epoch)
        rows = gnn_rows(model, phases[-1], num_nodes=num_nodes, name=name) + rows
    table = pl.DataFrame(rows).sort("negatives", descending=True, maintain_order=True)
    return LinkPredResult(table, history, leakage, _split_summary(phases, num_nodes), best_epoch,
                          verdict(table, gnn=name) if with_gnn else "baselines only",
                          time.monotonic() - started)  # fmt: skip
