"""Cross-view attention: tokens of all cameras attend to each other, so views agree.

A pre-norm transformer block (self-attention + MLP) over a set of tokens from every view of
one time step. It has no positional encoding of its own: each token carries its camera's
embedding (`nn/camera_embedding.py`), so permuting the views permutes the outputs the same way
and a rig with more or fewer cameras runs with the same weights. Missing views (a dropped or
failed camera) are left out as keys, so nothing they hold reaches the other views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class CrossViewAttention(nn.Module):
    """tokens [N, L, D], position [N, L, D] (camera embedding per token), present [N, L] bool
    (True: may be attended to; default all) -> [N, L, D].

    N independent sets (batch x time), L tokens per set (views x tokens per view). Queries and
    keys read `tokens + position`; values read `tokens`. Output = tokens + attention + MLP
    (residual), so a block initialised near zero leaves each view's tokens as they were.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"CrossViewAttention: dim={dim} is not divisible by heads={heads}")
        self.heads = heads
        self.norm_in = nn.LayerNorm(dim)
        self.qk = nn.Linear(dim, 2 * dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.SiLU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, tokens: torch.Tensor, position: torch.Tensor,
                present: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm_in(tokens)
        q, k = self.qk(x + position).chunk(2, -1)
        q, k, v = (rearrange(t, "n l (h d) -> n h l d", h=self.heads) for t in (q, k, self.v(x)))
        mask = None
        if present is not None:
            # A set with no present token attends to all (its outputs are unused by the callers),
            # which keeps softmax finite instead of NaN.
            present = present | ~present.any(-1, keepdim=True)
            mask = present[:, None, None, :]  # [N, 1, 1, L] broadcast over heads and queries
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        tokens = tokens + self.out(rearrange(attended, "n h l d -> n l (h d)"))
        return tokens + self.mlp(self.norm_mlp(tokens))


def mean_over_views(features: torch.Tensor) -> torch.Tensor:
    """The fused state the ego-motion and hazard heads read: [..., V, F] -> [..., F].

    A mean, not a learned pooling with view slots: it is the same for any order and number of
    views. The per-view features it averages have already exchanged information by attention.
    """
    return features.mean(-2)
