"""Self-supervised GraphSAGE node embeddings (gnn_0..gnn_31) and a Deep SVDD anomaly score on them.

Embeddings: a GraphSAGE encoder (mean aggregation, 2 layers) over the structural node
features (engine.graph.pyg.structural_features) is trained full-batch to tell the graph's
(undirected, distinct) edges from random pairs by a dot product, the unsupervised
GraphSAGE objective (Hamilton et al. 2017) without neighbour sampling. No label is
used, so the embeddings are features like any other for the risk model.

Speed (issue 8: 30k nodes <= 10 s): the mean aggregation is a product with the
row-normalised adjacency, built once as a torch CSR matrix (`mean_adjacency`), instead of
PyG's per-edge gather + scatter; each step scores at most PAIRS_PER_STEP sampled edges;
torch runs on one thread (`torch_threads`). Same maths and same initial weights as
PyG's `GraphSAGE(aggr="mean")` for a given seed.

Deep SVDD (Ruff et al. 2018): a bias-free MLP maps the embeddings into a space where
they are pulled towards a fixed centre c (the initial mean output); the squared
distance to c is the anomaly score (`svdd_score`).

`embedding_value` measures what the columns add: PR-AUC of a logistic regression on
the wallet features with vs without them, over repeated group splits (a ring is
never on both sides).
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from engine.features import build_feature_matrix
from engine.graph.pyg import edge_arrays, structural_features
from engine.graph.temporal import edges_from_frames, node_index
from engine.ingest.files import load_file
from models.ensemble import stratified_group_split
from models.gnn import seed_torch, standardize
from models.training import design_matrix, feature_columns, join_labels, labels_from_simulator
from storage.errors import BadInput

EMBEDDING_DIM = 32
EMBEDDING_COLUMNS = tuple(f"gnn_{i}" for i in range(EMBEDDING_DIM))
SVDD_COLUMN = "svdd_score"
PAIRS_PER_STEP = 1 << 15  # positive edges sampled per step (and as many random pairs)
TORCH_THREADS = 1  # see `torch_threads`


@contextmanager
def torch_threads(n: int):
    """Run torch on `n` intra-op threads inside the block, then restore the caller's setting.

    Why 1 here: the ops are small (30k x 32); on the shared 2-core machine two OpenMP threads wait on
    each other at every barrier while the other core is busy, measured 4-10x slower than one thread.
    A fixed count also keeps the floats independent of the caller's thread setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mean_adjacency(src: np.ndarray, dst: np.ndarray, *, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-normalised adjacency A of the undirected simple graph (distinct pairs, no self-loops) and A^T:
    float32 torch.sparse_csr (num_nodes, num_nodes); `A @ h` is the mean of the neighbours' h.

    Built once, so each propagation is one sparse-dense product (no scatter, no torch-scatter)."""
    keep = src != dst
    a, b = np.minimum(src[keep], dst[keep]), np.maximum(src[keep], dst[keep])
    keys = np.unique(np.concatenate([a * num_nodes + b, b * num_nodes + a]))  # sorted by (row, col)
    if keys.size == 0:
        raise BadInput("the graph has no edge between two distinct nodes; nothing to embed")
    rows, cols = keys // num_nodes, keys % num_nodes
    deg = np.bincount(rows, minlength=num_nodes)
    crow, col = torch.as_tensor(np.concatenate([[0], np.cumsum(deg)])), torch.as_tensor(cols)
    # the pattern is symmetric, so A^T has A's structure with the column's degree as divisor
    vals = [torch.as_tensor(1.0 / deg[ends], dtype=torch.float32) for ends in (rows, cols)]
    shape = (num_nodes, num_nodes)
    with warnings.catch_warnings():  # torch warns once per process that CSR support is "beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        adj, adj_t = (torch.sparse_csr_tensor(crow, col, v, shape, check_invariants=True) for v in vals)
    return adj, adj_t


def _distinct_pairs(adj: torch.Tensor) -> torch.Tensor:
    """The (i < j) pairs of a symmetric CSR pattern: int64 (2, E_undirected)."""
    crow, col = adj.crow_indices(), adj.col_indices()
    row = torch.repeat_interleave(torch.arange(crow.numel() - 1), crow[1:] - crow[:-1])
    return torch.stack([row, col])[:, row < col]


class _MeanPropagate(torch.autograd.Function):
    """`adj @ h`, with the gradient `adj_t @ grad` from the precomputed transpose (no per-step transpose)."""

    @staticmethod
    def forward(ctx, h, adj, adj_t):
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, h)

    @staticmethod
    def backward(ctx, grad):
        return torch.sparse.mm(ctx.adj_t, grad), None, None


class MeanSAGE(nn.Module):
    """GraphSAGE with mean aggregation on a precomputed `mean_adjacency` (A, A^T): per layer
    h' = W_neigh (A h) + b + W_self h, ReLU between layers; the maths of PyG's `SAGEConv(aggr="mean")`
    (lin_l with bias, lin_r without) at a fraction of the cost of scatter-based message passing.

    Shapes: forward(x (N, in_channels), adj=(A, A^T)) -> (N, out_channels)."""

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int, out_channels: int):
        super().__init__()
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.lin_l, self.lin_r = nn.ModuleList(), nn.ModuleList()
        for i, o in zip(dims[:-1], dims[1:], strict=True):
            self.lin_l.append(nn.Linear(i, o))
            self.lin_r.append(nn.Linear(i, o, bias=False))
            self.lin_l[-1].reset_parameters()  # SAGEConv draws its init twice: same seed, same weights as PyG's
            self.lin_r[-1].reset_parameters()

    def forward(self, x: torch.Tensor, adj: tuple[torch.Tensor, torch.Tensor], ax: torch.Tensor | None = None):
        """`ax` = A @ x when the caller computed it once (x is constant during training)."""
        h = x
        for i, (lin_l, lin_r) in enumerate(zip(self.lin_l, self.lin_r, strict=True)):
            agg = ax if i == 0 and ax is not None else _MeanPropagate.apply(h, *adj)
            h = lin_l(agg) + lin_r(h)
            if i < len(self.lin_l) - 1:
                h = F.relu(h)
        return h


def sage_embeddings(edges: pl.DataFrame, *, num_nodes: int, dim: int = EMBEDDING_DIM, hidden: int = 32,
                    epochs: int = 20, lr: float = 0.01, seed: int = 42,
                    pairs_per_step: int = PAIRS_PER_STEP) -> np.ndarray:
    """float32 (num_nodes, dim) embeddings of the nodes of `edges` (src_id, dst_id, amount, kind).

    Full-batch encoder; each of the `epochs` steps scores the graph's distinct edges (a random
    `pairs_per_step` of them, without replacement, on bigger graphs) against as many (same source,
    uniform node) pairs, so a step's cost is bounded whatever the edge count."""
    seed_torch(seed)
    x = torch.as_tensor(standardize(structural_features(edges, num_nodes=num_nodes)))
    src, dst = edge_arrays(edges)
    adj = mean_adjacency(src, dst, num_nodes=num_nodes)
    pos = _distinct_pairs(adj[0])
    ax = torch.sparse.mm(adj[0], x)
    encoder = MeanSAGE(x.shape[1], hidden, 2, dim)
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    k = min(pairs_per_step, pos.shape[1])
    y = torch.cat([torch.ones(k), torch.zeros(k)])
    for _ in range(epochs):
        opt.zero_grad()
        z = encoder(x, adj, ax)
        batch = pos if k == pos.shape[1] else pos[:, torch.randperm(pos.shape[1], generator=gen)[:k]]
        pairs = torch.cat([batch, torch.stack([batch[0], torch.randint(0, num_nodes, (k,), generator=gen)])], dim=1)
        loss = F.binary_cross_entropy_with_logits((z[pairs[0]] * z[pairs[1]]).sum(-1), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return encoder(x, adj, ax).numpy().astype(np.float32)


def deep_svdd_scores(z: np.ndarray, *, rep_dim: int = 16, epochs: int = 50, lr: float = 1e-3,
                     weight_decay: float = 1e-6, seed: int = 42) -> np.ndarray:
    """Deep SVDD (one-class) squared distance to the centre for each row of `z`; float64 (n,)."""
    seed_torch(seed)
    x = torch.as_tensor(standardize(z))
    net = nn.Sequential(nn.Linear(x.shape[1], 32, bias=False), nn.LeakyReLU(), nn.Linear(32, rep_dim, bias=False))
    with torch.no_grad():
        c = net(x).mean(0)
        c[(c.abs() < 0.1)] = torch.where(c[(c.abs() < 0.1)] < 0, -0.1, 0.1)  # avoid the trivial all-zero map
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss = ((net(x) - c) ** 2).sum(1).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ((net(x) - c) ** 2).sum(1).numpy().astype(np.float64)


def embedding_frame(edges: pl.DataFrame, *, epochs: int = 20, seed: int = 42, svdd_epochs: int = 50) -> pl.DataFrame:
    """Embeddings and the SVDD score of every node of an edge list (src, dst, amount, kind; ids assigned here).

    Runs torch on TORCH_THREADS threads (restored afterwards).
    Shapes: -> [wallet: str (account or pool id), gnn_0..gnn_31: f32, svdd_score: f64], by wallet."""
    index = node_index(edges)
    ids = index.rename({"account_id": "src", "node_id": "src_id"})
    with_ids = edges.drop("src_id", "dst_id", strict=False).join(ids, on="src").join(
        ids.rename({"src": "dst", "src_id": "dst_id"}), on="dst"
    )  # fmt: skip
    with torch_threads(TORCH_THREADS):
        z = sage_embeddings(with_ids, num_nodes=index.height, epochs=epochs, seed=seed)
        svdd = deep_svdd_scores(z, epochs=svdd_epochs, seed=seed)
    cols = {name: z[:, i] for i, name in enumerate(EMBEDDING_COLUMNS)}
    return pl.DataFrame({"wallet": index.get_column("account_id"), **cols, SVDD_COLUMN: svdd})


def _pr_auc(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int) -> float:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                        LogisticRegression(max_iter=2000, C=0.5, random_state=seed))  # fmt: skip
    clf.fit(X[train], y[train])
    return float(average_precision_score(y[test], clf.predict_proba(X[test])[:, 1]))


def embedding_value(features: pl.DataFrame, labels: pl.DataFrame, embeddings: pl.DataFrame, *,
                    seed: int = 42, repeats: int = 5, test_size: float = 0.3) -> dict:
    """PR-AUC of a logistic regression on the feature matrix without / with gnn_* (+ svdd_score), and on the
    embeddings alone, averaged over `repeats` group splits (rings held out whole).

    features: the risk model's matrix (wallet, pair_id, as_of, numeric columns); labels: simulator
    labels.csv (account, role, is_wash, ring_id); embeddings: `embedding_frame` output."""
    base_cols = [c for c in feature_columns(features) if not c.startswith("gnn_") and c != SVDD_COLUMN]
    emb_cols = [*EMBEDDING_COLUMNS, SVDD_COLUMN]
    data = join_labels(features.drop(emb_cols, strict=False).join(embeddings, on="wallet", how="left"),
                       labels_from_simulator(labels))  # fmt: skip
    y = data.get_column("label").to_numpy().astype(int)
    if np.unique(y).size < 2:
        raise BadInput("the labelled rows hold one class only; PR-AUC needs wash and legit wallets")
    groups = data.get_column("group").to_numpy()
    sets = {"without_gnn": base_cols, "with_gnn": base_cols + emb_cols, "gnn_only": emb_cols}
    X = {k: design_matrix(data, cols) for k, cols in sets.items()}
    scores = {k: [] for k in sets}
    for r in range(repeats):
        train, test = stratified_group_split(y, groups, test_size, seed + r)
        for k in sets:
            scores[k].append(_pr_auc(X[k], y, train, test, seed))
    out = {f"pr_auc_{k}": float(np.mean(v)) for k, v in scores.items()}
    out |= {f"pr_auc_{k}_sd": float(np.std(v)) for k, v in scores.items()}
    return out | {"n_rows": int(y.size), "prevalence": float(y.mean()), "repeats": repeats,
                  "n_base_features": len(base_cols)}  # fmt: skip


def market_embedding_value(market_dir, *, seed: int = 42, epochs: int = 20, repeats: int = 5) -> dict:
    """`embedding_value` on a simulated market folder (engine.synthetic.generate_market output):
    features as of the last trade, embeddings of the whole trade + funding graph, labels.csv.

    Adds embed_seconds and n_nodes to the result."""
    market_dir = Path(market_dir)
    trades = load_file(market_dir / "trades.jsonl").frame
    operations = load_file(market_dir / "operations.jsonl").frame
    labels = pl.read_csv(market_dir / "labels.csv", schema_overrides={"ring_id": pl.String})
    features = build_feature_matrix(trades, operations, as_of=trades.get_column("closed_at").max())
    started = time.monotonic()
    emb = embedding_frame(edges_from_frames(trades, operations), epochs=epochs, seed=seed)
    seconds = time.monotonic() - started
    return embedding_value(features, labels, emb, seed=seed, repeats=repeats) | {
        "embed_seconds": seconds, "n_nodes": emb.height}
