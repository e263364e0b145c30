"""Self-supervised GraphSAGE node embeddings (gnn_0..gnn_31) and a Deep SVDD anomaly score on them.

Embeddings: a GraphSAGE encoder over the structural node features
(engine.graph.pyg.structural_features) is trained full-batch to tell the graph's
(undirected, distinct) edges from random pairs by a dot product, the unsupervised
GraphSAGE objective (Hamilton et al. 2017) without neighbour sampling. No label is
used, so the embeddings are features like any other for the risk model.

Deep SVDD (Ruff et al. 2018): a bias-free MLP maps the embeddings into a space where
they are pulled towards a fixed centre c (the initial mean output); the squared
distance to c is the anomaly score (`svdd_score`).

`embedding_value` measures what the columns add: PR-AUC of a logistic regression on
the wallet features with vs without them, over repeated group splits (a ring is
never on both sides).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.graph.pyg import message_edge_index, structural_features
from engine.graph.temporal import node_index
from models.gnn import build_encoder, seed_torch, standardize
from storage.errors import BadInput

EMBEDDING_DIM = 32
EMBEDDING_COLUMNS = tuple(f"gnn_{i}" for i in range(EMBEDDING_DIM))
SVDD_COLUMN = "svdd_score"


def sage_embeddings(edges: pl.DataFrame, *, num_nodes: int, dim: int = EMBEDDING_DIM, hidden: int = 32,
                    epochs: int = 20, lr: float = 0.01, seed: int = 42) -> np.ndarray:
    """float32 (num_nodes, dim) embeddings of the nodes of `edges` (src_id, dst_id, amount, kind)."""
    import torch
    import torch.nn.functional as F

    seed_torch(seed)
    x = torch.as_tensor(standardize(structural_features(edges, num_nodes=num_nodes)))
    ei = torch.as_tensor(message_edge_index(edges, undirected=True))
    if ei.shape[1] == 0:
        raise BadInput("the graph has no edge between two distinct nodes; nothing to embed")
    encoder = build_encoder("sage", in_channels=x.shape[1], hidden_channels=hidden, num_layers=2, out_channels=dim)
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    pos = ei[:, ei[0] < ei[1]]
    y = torch.cat([torch.ones(pos.shape[1]), torch.zeros(pos.shape[1])])
    for _ in range(epochs):
        encoder.train()
        opt.zero_grad()
        z = encoder(x, ei)
        neg = torch.stack([pos[0], torch.randint(0, num_nodes, (pos.shape[1],), generator=gen)])
        pairs = torch.cat([pos, neg], dim=1)
        loss = F.binary_cross_entropy_with_logits((z[pairs[0]] * z[pairs[1]]).sum(-1), y)
        loss.backward()
        opt.step()
    encoder.eval()
    with torch.no_grad():
        return encoder(x, ei).numpy().astype(np.float32)


def deep_svdd_scores(z: np.ndarray, *, rep_dim: int = 16, epochs: int = 50, lr: float = 1e-3,
                     weight_decay: float = 1e-6, seed: int = 42) -> np.ndarray:
    """Deep SVDD (one-class) squared distance to the centre for each row of `z`; float64 (n,)."""
    import torch
    from torch import nn

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

    Shapes: -> [wallet: str (account or pool id), gnn_0..gnn_31: f32, svdd_score: f64], by wallet."""
    index = node_index(edges)
    ids = index.rename({"account_id": "src", "node_id": "src_id"})
    with_ids = edges.drop("src_id", "dst_id", strict=False).join(ids, on="src").join(
        ids.rename({"src": "dst", "src_id": "dst_id"}), on="dst"
    )  # fmt: skip
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
    from models.ensemble import stratified_group_split
    from models.training import design_matrix, feature_columns, join_labels, labels_from_simulator

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
    import time
    from pathlib import Path

    from engine.features import build_feature_matrix
    from engine.graph.temporal import edges_from_frames
    from engine.ingest.files import load_file

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
