"""Channel labels: for every channel, the k vocabulary phrases with the largest relevance @ Δt(phrase, neutral).

The score is signed: a label names where pushing the channel up (+alpha) moves the image. A phrase whose
embedding equals the neutral's (the neutral itself) has no direction and is never a label.
"""

from __future__ import annotations

import numpy as np
import torch

from models.directions import delta_t_rows


@torch.no_grad()
def compute_labels(
    relevance: np.ndarray, vocab_embeddings: np.ndarray, neutral_embedding: np.ndarray, k: int, block: int = 16_384
) -> tuple[np.ndarray, np.ndarray]:
    """labels_index [C, k'] int64 (-1: none) and labels_score [C, k'] float32, k' = min(k, V)."""
    rel = torch.as_tensor(relevance, dtype=torch.float32)  # [C, D]
    t = np.asarray(vocab_embeddings, np.float32)  # [V, D]
    C, V = rel.shape[0], t.shape[0]
    k = min(k, V)
    best_score = torch.full((C, 0), -float("inf"))
    best_index = torch.zeros((C, 0), dtype=torch.int64)
    for a in range(0, V, block):
        delta_t, valid = (torch.from_numpy(x) for x in delta_t_rows(t[a : a + block], neutral_embedding))  # [b, D]
        score = rel @ delta_t.T  # [C, b]
        score[:, ~valid] = -float("inf")
        score = torch.cat([best_score, score], 1)
        index = torch.cat([best_index, torch.arange(a, a + len(delta_t)).expand(C, -1)], 1)
        top = torch.topk(score, k, dim=1, sorted=True)
        best_score, best_index = top.values, index.gather(1, top.indices)
    best_index = torch.where(torch.isinf(best_score), torch.full_like(best_index, -1), best_index)
    best_score = torch.where(torch.isinf(best_score), torch.full_like(best_score, float("nan")), best_score)
    return best_index.numpy().astype(np.int64), best_score.numpy().astype(np.float32)
