r"""Top-k ranking metrics over a full catalogue, pure JAX.

All functions take a batch of score rows ``scores [B, I]`` (higher is better)
and an optional ``exclude [B, I]`` boolean mask of items that must not be
ranked (the padding id 0, items already seen in training). They are jittable
and vmappable; ``k`` is a static Python int.

**Ties are broken pessimistically**: a relevant item ranks *below* every
non-relevant item with the same score (and, among relevant items with equal
scores, by increasing index). A model that outputs constant scores therefore
gets the worst possible metrics instead of credit for luck, as recommended by
Krichene & Rendle (KDD 2020, §2) and Cañamares & Castells (SIGIR 2020).

Definitions, for a row with relevant set :math:`R` and 0-based pessimistic
ranks :math:`\rho_i` of its items:

* HR@k = :math:`\mathbb{1}[\exists i \in R: \rho_i < k]`
* precision@k = :math:`|\{i \in R: \rho_i < k\}| / k`
* recall@k = :math:`|\{i \in R: \rho_i < k\}| / |R|`
* NDCG@k = :math:`\sum_{i \in R, \rho_i < k} 1/\log_2(\rho_i + 2)` divided by
  :math:`\sum_{j < \min(k, |R|)} 1/\log_2(j + 2)` (Järvelin & Kekäläinen 2002)
* MRR = :math:`1 / (\min_{i \in R} \rho_i + 1)`

Rows with no relevant item get 0 for every metric (they are usually filtered
out before; ``num_relevant`` tells which). For the common next-item case (one
target per row) use :func:`target_rank` and :func:`next_item_metrics`, which
are O(I) per row instead of a sort.

List-level metrics: :func:`catalog_coverage` (share of the catalogue that
appears in at least one top-k list) and :func:`intra_list_diversity` (mean
pairwise distance between the items of each list, Ziegler et al. WWW 2005 §3.3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtrlrec.core.errors import ConfigError


def _check_k(k, num_items):
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"ranking metrics need an integer k >= 1, got {k!r}.")
    if k > num_items:
        raise ConfigError(f"k={k} exceeds the number of items {num_items}.")


def target_rank(scores: jax.Array, target: jax.Array, exclude: jax.Array | None = None) -> jax.Array:
    r"""Pessimistic 0-based rank of one target item per row.

    :math:`\rho = |\{j: s_j > s_t\}| + |\{j \ne t: s_j = s_t\}|`, counting only
    items not excluded. The target itself is never excluded.

    Args:
      scores: ``[B, I]`` float scores.
      target: ``[B]`` int target item index.
      exclude: optional ``[B, I]`` bool, items left out of the ranking.

    Returns:
      ``[B]`` int32 ranks in ``0 .. I-1``.
    """
    scores = jnp.asarray(scores, jnp.float32)
    target = jnp.asarray(target, jnp.int32)
    s_t = jnp.take_along_axis(scores, target[:, None], axis=1)  # [B, 1]
    beats = scores >= s_t
    if exclude is not None:
        beats = beats & ~jnp.asarray(exclude, bool)
    not_self = jnp.arange(scores.shape[1])[None, :] != target[:, None]
    return jnp.sum(beats & not_self, axis=1).astype(jnp.int32)


def next_item_metrics(
    scores: jax.Array, target: jax.Array, k: int, exclude: jax.Array | None = None
) -> dict[str, jax.Array]:
    """HR/NDCG/precision/recall@k and MRR for one relevant item per row.

    Args:
      scores: ``[B, I]``.
      target: ``[B]`` int.
      k: cut-off (static).
      exclude: optional ``[B, I]`` bool mask.

    Returns:
      ``{'hr@k', 'ndcg@k', 'precision@k', 'recall@k', 'mrr'}`` each ``[B]`` float32
      (average over the batch yourself, so sums across batches stay exact).
    """
    _check_k(k, scores.shape[-1])
    rank = target_rank(scores, target, exclude).astype(jnp.float32)
    hit = (rank < k).astype(jnp.float32)
    return {
        f"hr@{k}": hit,
        f"ndcg@{k}": hit / jnp.log2(rank + 2.0),
        f"precision@{k}": hit / k,
        f"recall@{k}": hit,
        "mrr": 1.0 / (rank + 1.0),
    }


def pessimistic_ranks(
    scores: jax.Array, relevant: jax.Array, exclude: jax.Array | None = None
) -> jax.Array:
    """0-based rank of every item when ties put relevant items last.

    Sorts each row by (score descending, relevant last, index ascending);
    excluded items are moved to the end (their ranks are >= the number of
    non-excluded items).

    Args:
      scores: ``[B, I]``.
      relevant: ``[B, I]`` bool.
      exclude: optional ``[B, I]`` bool.

    Returns:
      ``[B, I]`` int32 ranks (a permutation of ``0 .. I-1`` per row).
    """
    scores = jnp.asarray(scores, jnp.float32)
    relevant = jnp.asarray(relevant, bool)
    b, n = scores.shape
    excl = jnp.zeros((b, n), bool) if exclude is None else jnp.asarray(exclude, bool)
    idx = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))

    def sort_row(neg_s, rel, ex, ix):
        _, _, _, order = jax.lax.sort(
            (ex.astype(jnp.int32), neg_s, rel.astype(jnp.int32), ix), num_keys=3
        )
        return jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))

    return jax.vmap(sort_row)(-scores, relevant & ~excl, excl, idx)


def ranking_metrics(
    scores: jax.Array, relevant: jax.Array, k: int, exclude: jax.Array | None = None
) -> dict[str, jax.Array]:
    """Precision/recall/HR/NDCG@k and MRR for any number of relevant items per row.

    Args:
      scores: ``[B, I]``.
      relevant: ``[B, I]`` bool; excluded items are not counted as relevant.
      k: cut-off (static).
      exclude: optional ``[B, I]`` bool.

    Returns:
      ``{'precision@k', 'recall@k', 'hr@k', 'ndcg@k', 'mrr', 'num_relevant'}``,
      each ``[B]`` float32.
    """
    _check_k(k, scores.shape[-1])
    relevant = jnp.asarray(relevant, bool)
    if exclude is not None:
        relevant = relevant & ~jnp.asarray(exclude, bool)
    rank = pessimistic_ranks(scores, relevant, exclude).astype(jnp.float32)
    rel = relevant.astype(jnp.float32)
    num_rel = jnp.sum(rel, axis=1)
    in_top = (rank < k).astype(jnp.float32) * rel
    hits = jnp.sum(in_top, axis=1)
    dcg = jnp.sum(in_top / jnp.log2(rank + 2.0), axis=1)
    pos = jnp.arange(k, dtype=jnp.float32)
    idcg = jnp.sum(jnp.where(pos[None, :] < num_rel[:, None], 1.0 / jnp.log2(pos + 2.0), 0.0), axis=1)
    any_rel = num_rel > 0
    first = jnp.min(jnp.where(relevant, rank, jnp.inf), axis=1)
    safe = jnp.maximum(num_rel, 1.0)
    return {
        f"precision@{k}": hits / k,
        f"recall@{k}": hits / safe,
        f"hr@{k}": (hits > 0).astype(jnp.float32),
        f"ndcg@{k}": jnp.where(any_rel, dcg / jnp.maximum(idcg, 1e-12), 0.0),
        "mrr": jnp.where(any_rel, 1.0 / (first + 1.0), 0.0),
        "num_relevant": num_rel,
    }


def top_k(scores: jax.Array, k: int, exclude: jax.Array | None = None) -> jax.Array:
    """The ``k`` highest-scoring non-excluded items per row (ties: lowest index first).

    Args:
      scores: ``[B, I]``; exclude: optional ``[B, I]`` bool.

    Returns:
      ``[B, k]`` int32 item indices.
    """
    _check_k(k, scores.shape[-1])
    scores = jnp.asarray(scores, jnp.float32)
    if exclude is not None:
        scores = jnp.where(jnp.asarray(exclude, bool), -jnp.inf, scores)
    return jax.lax.top_k(scores, k)[1].astype(jnp.int32)


def catalog_coverage(lists: jax.Array, num_items: int, ignore: jax.Array | None = None) -> jax.Array:
    """Share of the catalogue recommended at least once.

    :math:`|\\bigcup_b L_b| / I'`, where :math:`I'` is ``num_items`` minus the
    number of ``ignore``d items (e.g. the padding id 0).

    Args:
      lists: ``[B, k]`` int item indices.
      num_items: I (static).
      ignore: optional ``[I]`` bool of items not in the catalogue.

    Returns:
      scalar float32 in [0, 1].
    """
    shown = jnp.zeros(num_items, bool).at[jnp.ravel(lists)].set(True)
    if ignore is not None:
        ignore = jnp.asarray(ignore, bool)
        shown = shown & ~ignore
        denom = num_items - jnp.sum(ignore)
    else:
        denom = num_items
    return jnp.sum(shown) / jnp.asarray(denom, jnp.float32)


def intra_list_diversity(lists: jax.Array, item_features: jax.Array) -> jax.Array:
    r"""Mean pairwise cosine distance within each list (Ziegler et al. 2005 §3.3).

    :math:`\mathrm{ILD}(L) = \frac{2}{k(k-1)} \sum_{i<j} (1 - \cos(x_{L_i}, x_{L_j}))`.
    Items with an all-zero feature vector have cosine 0 with everything
    (distance 1).

    Args:
      lists: ``[B, k]`` int, k >= 2.
      item_features: ``[I, d]`` float (e.g. genre multi-hot vectors).

    Returns:
      ``[B]`` float32.
    """
    k = lists.shape[-1]
    if k < 2:
        raise ConfigError(f"intra_list_diversity needs lists of length >= 2, got {k}.")
    x = jnp.asarray(item_features, jnp.float32)[lists]  # [B, k, d]
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    x = x / jnp.where(norm > 0, norm, 1.0)
    sim = jnp.einsum("bid,bjd->bij", x, x)
    off = 1.0 - jnp.eye(k)
    return jnp.sum((1.0 - sim) * off, axis=(1, 2)) / (k * (k - 1))


__all__ = [
    "catalog_coverage", "intra_list_diversity", "next_item_metrics", "pessimistic_ranks",
    "ranking_metrics", "target_rank", "top_k",
]
