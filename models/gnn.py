"""GNN encoders (GCN, GraphSAGE, GAT) and link decoders, full-batch, CPU.

The encoders are PyG's own `BasicGNN` models (`torch_geometric.nn.models.GCN`,
`GraphSAGE`, `GAT`): `in_channels`, `hidden_channels`, `num_layers`,
`out_channels`, `forward(x, edge_index)`. Aggregation runs on torch's native
scatter (torch-scatter / torch-sparse are not installed and not needed), so
training is full-batch: no neighbour sampling loaders.

torch_geometric is imported inside `build_encoder` (it takes seconds to import).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from storage.errors import BadInput

ENCODERS = {"gcn": "GCN", "sage": "GraphSAGE", "gat": "GAT"}
DECODERS = ("dot", "mlp")


def seed_torch(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels (a warning where it has none)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_encoder(name: str, *, in_channels: int, hidden_channels: int = 64, num_layers: int = 2,
                  out_channels: int | None = None, dropout: float = 0.0, heads: int = 2) -> nn.Module:
    """PyG BasicGNN encoder `name` in ENCODERS ("gcn", "sage", "gat"); (N, in) -> (N, out or hidden)."""
    from torch_geometric.nn import models as pyg_models

    key = name.lower()
    if key not in ENCODERS:
        raise BadInput(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    kwargs = {"heads": heads} if key == "gat" else {}
    cls = getattr(pyg_models, ENCODERS[key])
    return cls(in_channels=in_channels, hidden_channels=hidden_channels, num_layers=num_layers,
               out_channels=out_channels, dropout=dropout, **kwargs)  # fmt: skip


class DotDecoder(nn.Module):
    """Score of a pair = <z_src, z_dst> (symmetric)."""

    def forward(self, z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        return (z[pairs[0]] * z[pairs[1]]).sum(-1)


class MLPDecoder(nn.Module):
    """Score of a directed pair = MLP([z_src * z_dst, z_src, z_dst])."""

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * channels, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        a, b = z[pairs[0]], z[pairs[1]]
        return self.mlp(torch.cat([a * b, a, b], dim=-1)).squeeze(-1)


class LinkModel(nn.Module):
    """Encoder + decoder: logits of (2, P) node pairs given node features and a message graph."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x, edge_index), pairs)


def build_link_model(encoder: str, *, in_channels: int, hidden_channels: int = 64, out_channels: int = 32,
                     num_layers: int = 2, decoder: str = "mlp", dropout: float = 0.0) -> LinkModel:
    """An encoder (ENCODERS) with a decoder (DECODERS)."""
    if decoder not in DECODERS:
        raise BadInput(f"unknown decoder {decoder!r}; choose one of {list(DECODERS)}")
    enc = build_encoder(encoder, in_channels=in_channels, hidden_channels=hidden_channels, num_layers=num_layers,
                        out_channels=out_channels, dropout=dropout)  # fmt: skip
    dec = DotDecoder() if decoder == "dot" else MLPDecoder(out_channels)
    return LinkModel(enc, dec)


def standardize(x: np.ndarray) -> np.ndarray:
    """Columns to zero mean / unit variance (constant columns to 0), float32."""
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
