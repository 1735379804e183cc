"""Ranking metrics against small hand-computed rankings."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.eval import ranking


def test_target_rank_pessimistic_ties_and_exclusion():
    scores = jnp.array([[0.1, 0.5, 0.5, 0.9, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0]])
    # row 0: target 2 (score .5): one higher (.9), two tied others -> rank 3
    # row 1: constant scores: worst rank 4
    np.testing.assert_array_equal(ranking.target_rank(scores, jnp.array([2, 0])), [3, 4])
    excl = jnp.array([[False, True, False, True, False], [False, False, True, True, False]])
    np.testing.assert_array_equal(ranking.target_rank(scores, jnp.array([2, 0]), excl), [1, 2])


def test_next_item_metrics_by_hand():
    scores = jnp.array([[0.1, 0.5, 0.5, 0.9, 0.5], [0.0, 0.3, 0.2, 0.1, 0.4]])
    m = ranking.next_item_metrics(scores, jnp.array([2, 1]), k=2)
    # ranks: row 0 -> 3 (miss), row 1 -> 1 (hit at position 2)
    np.testing.assert_allclose(m["hr@2"], [0, 1])
    np.testing.assert_allclose(m["ndcg@2"], [0, 1 / math.log2(3)], rtol=1e-6)
    np.testing.assert_allclose(m["precision@2"], [0, 0.5])
    np.testing.assert_allclose(m["recall@2"], [0, 1])
    np.testing.assert_allclose(m["mrr"], [1 / 4, 1 / 2], rtol=1e-6)


def test_ranking_metrics_multi_relevant_by_hand():
    scores = jnp.array([[0.9, 0.8, 0.8, 0.3, 0.1, 0.0]])
    relevant = jnp.array([[False, True, False, False, True, False]])
    # pessimistic order: 0, 2, 1 (tie .8 -> relevant last), 3, 4, 5
    np.testing.assert_array_equal(
        ranking.pessimistic_ranks(scores, relevant), [[0, 2, 1, 3, 4, 5]]
    )
    m = ranking.ranking_metrics(scores, relevant, k=3)
    np.testing.assert_allclose(m["precision@3"], [1 / 3], rtol=1e-6)
    np.testing.assert_allclose(m["recall@3"], [1 / 2], rtol=1e-6)
    np.testing.assert_allclose(m["hr@3"], [1.0])
    idcg = 1 + 1 / math.log2(3)
    np.testing.assert_allclose(m["ndcg@3"], [(1 / math.log2(4)) / idcg], rtol=1e-6)
    np.testing.assert_allclose(m["mrr"], [1 / 3], rtol=1e-6)
    # excluding item 0 and 2 moves item 1 to the top
    excl = jnp.array([[True, False, True, False, False, False]])
    m = ranking.ranking_metrics(scores, relevant, k=2, exclude=excl)
    np.testing.assert_allclose(m["precision@2"], [1 / 2])
    np.testing.assert_allclose(m["ndcg@2"], [1 / idcg], rtol=1e-6)
    np.testing.assert_allclose(m["mrr"], [1.0])


def test_single_target_agrees_with_general_form():
    rng = np.random.default_rng(0)
    scores = jnp.asarray(rng.integers(0, 4, size=(16, 12)).astype(np.float32))  # many ties
    target = jnp.asarray(rng.integers(0, 12, size=16))
    rel = jnp.arange(12)[None, :] == target[:, None]
    a = ranking.next_item_metrics(scores, target, k=5)
    b = ranking.ranking_metrics(scores, rel, k=5)
    for key in ("hr@5", "ndcg@5", "precision@5", "recall@5", "mrr"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)


def test_no_relevant_rows_score_zero():
    m = ranking.ranking_metrics(jnp.ones((1, 4)), jnp.zeros((1, 4), bool), k=2)
    assert all(float(v[0]) == 0.0 for v in m.values())


def test_top_k_coverage_and_diversity_by_hand():
    scores = jnp.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    lists = ranking.top_k(scores, 2, exclude=jnp.array([[True, False, False, False]] * 2))
    np.testing.assert_array_equal(lists, [[1, 2], [3, 2]])
    assert float(ranking.catalog_coverage(lists, 4)) == pytest.approx(3 / 4)
    ignore = jnp.array([True, False, False, False])
    assert float(ranking.catalog_coverage(lists, 4, ignore)) == pytest.approx(1.0)
    feats = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ild = ranking.intra_list_diversity(jnp.array([[0, 1, 2], [1, 3, 0]]), feats)
    # list 0: pairs (0,1) d=0, (0,2) d=1, (1,2) d=1 -> 2/3
    # list 1: (1,3) and (3,0) d=1-1/sqrt2, (1,0) d=0
    np.testing.assert_allclose(ild, [2 / 3, 2 * (1 - 1 / math.sqrt(2)) / 3], rtol=1e-6)


def test_bad_k():
    with pytest.raises(ConfigError, match="k=5 exceeds"):
        ranking.next_item_metrics(jnp.ones((1, 4)), jnp.zeros(1, int), k=5)
    with pytest.raises(ConfigError, match="k >= 1"):
        ranking.top_k(jnp.ones((1, 4)), 0)
    with pytest.raises(ConfigError, match="length >= 2"):
        ranking.intra_list_diversity(jnp.zeros((1, 1), int), jnp.ones((4, 2)))
