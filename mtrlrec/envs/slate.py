r"""Slate recommendation with users whose interests evolve (RecSim interest evolution).

Each step the agent shows a user a slate of ``k`` of ``m`` candidate items; the
user clicks at most one through a choice model (:mod:`mtrlrec.envs.choice`),
consumes it, and the user's interests and time budget evolve. Users are a
batch axis: the same pure code steps one user or 100,000 under ``vmap``, and
episodes of different lengths are handled by auto-reset (:meth:`SlateEnv.step`).

**Generative model** (Ie et al. 2019, arXiv:1905.12767, §6; RecSim 0.2.4
``environments/interest_evolution.py``, restated in
``shared/specs/interest_evolution.md``). Defaults are those of RecSim.

*Items.* Topic mode (default): candidate ``j`` has topic
:math:`c_j \sim \mathcal U\{0..T-1\}` (``T = 20``), features
:math:`d_j = e_{c_j}` (one-hot) and quality
:math:`q_j \sim \mathcal N(\mu_{c_j}, \sigma_q^2)` with
:math:`\mu = \mathrm{linspace}(-3, 0, 14) \Vert \mathrm{linspace}(0, 3, 6)` and
:math:`\sigma_q = 0.1`; length :math:`\ell = 4`. ``m`` fresh candidates are
drawn every step (``resample_documents=True``) or once per episode.
Catalogue mode: items are rows of a catalogue (features ``[N, D]`` such as
pretrained embeddings, quality ``[N]``); the ``m`` candidates are drawn without
replacement each step, or are the whole catalogue when ``m = N``.

*User.* Interests :math:`u \sim \mathcal U(-1, 1)^D`, budget :math:`B_0 = 200`.
Both are observed (RecSim observes ``u``, not ``B``): the observation is
``{'user': u [D], 'doc': features [m, D]}``.

*Choice.* Affinities :math:`s_i = u \cdot d_{a_i}` of the slate items go
through the choice model (default multinomial proportional with no-click mass
1 and min normaliser -1: :math:`P(i) = (s_i + 1) / (\sum_j (s_j + 1) + 2)`).

*Response.* On a click on item ``i``: watch time :math:`w = \min(B, \ell)`
(budget before the update). Multi-task components beyond RecSim:

* ``click`` :math:`\in \{0, 1\}`;
* ``purchase``
  :math:`\sim \mathrm{Bernoulli}(\sigma(\beta_p + \beta_{pq} q_i + \beta_{ps} s_i))`
  given a click (defaults :math:`\beta_p = -2, \beta_{pq} = 1, \beta_{ps} = 1`), 0 otherwise;
* ``watch_time`` :math:`w`;
* ``return``: drawn when the budget runs out (``terminated``), whether the user
  comes back for another session,
  :math:`\sim \mathrm{Bernoulli}(\sigma(\beta_r + \beta_{rq} \bar q))` with
  :math:`\bar q` the mean quality of the items clicked in the session (0 if none);
  defaults :math:`\beta_r = 0, \beta_{rq} = 1`; 0 on other steps.

The reward is the vector of these four components (``reward_weights=None``)
or their weighted sum (default weights click 1, purchase 5, watch time 0, return
0; the ``recsim_interest_evolution`` configuration uses watch time only, as
RecSim's ``clicked_watchtime_reward``).

*Interest update* (on a click on item with features ``d``; ``interest_update``):

* ``'recsim'`` (RecSim ``IEvUserModel.update_state``):
  :math:`\alpha(u) = y - (y/x)|u|` (elementwise, ``y = 0.3``, ``x = 1``),
  :math:`\Delta = \alpha(u) \odot d \odot (d - u)`, and with probability
  :math:`p^+ = \frac{u + 1}{2} \cdot d` :math:`u \leftarrow u + \Delta`, otherwise
  :math:`u \leftarrow u - \Delta`; then clip to [-1, 1]. For one-hot ``d = e_c``
  only :math:`u_c` moves, by :math:`\pm (0.3 - 0.3|u_c|)(1 - u_c)`.
* ``'additive'`` (:math:`s' = s \oplus a`):
  :math:`u \leftarrow \mathrm{clip}(u + \eta\, \mathbb 1[\text{click}]\, d
  + \nu \bar d_{\text{shown}}, -1, 1)`.
* ``'smoothing'``: :math:`u \leftarrow \mathrm{clip}(\alpha u + (1 - \alpha) \tilde u
  + \nu \bar d_{\text{shown}}, -1, 1)` with :math:`\tilde u = d` on a click and
  :math:`\tilde u = u` otherwise.

Here :math:`\bar d_{\text{shown}}` is the mean feature vector of the slate and
:math:`\eta` = ``update_rate`` (0.1), :math:`\alpha` = ``smoothing_alpha``
(0.9), :math:`\nu` = ``shown_rate`` (0).

*Budget.* On a click:
:math:`B \leftarrow B - w + \alpha_B\, w\, (f_u\, U(s_i) + f_d\, q_i)` with
:math:`\alpha_B = 0.9/3.4`, :math:`f_u = 0`, :math:`f_d = 1` and :math:`U` the
choice model's single-item score (RecSim's ``expected_utility``); without a
click :math:`B \leftarrow B - 0.5`. The episode *terminates* when
:math:`B \le 0`, and is *truncated* after ``max_episode_steps`` steps (RecSim's
runner cap, 27,000; 0 = none).

Per-step ``info``: ``click``, ``purchase``, ``watch_time``, ``return``,
``clicked_quality`` (:math:`q_i` on a click, else 0), ``budget``, and vectors
``slate_click [k]``, ``slate_quality [k]`` (RecSim's per-item responses).
Cumulative sums of the first five are reported by the loop, so CTR is
``cumulative_click / steps`` and RecSim's ``AverageQuality`` is
``cumulative_clicked_quality / cumulative_click``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.core.spaces import Box, Dict, Slate
from mtrlrec.envs.choice import ChoiceModel, MultinomialProportional

REWARD_NAMES = ("click", "purchase", "watch_time", "return")


def _uniform(words: jax.Array) -> jax.Array:
    """Uniforms in [0, 1) from uint32 words (23 mantissa bits, as ``jax.random.uniform``)."""
    mant = (words >> jnp.uint32(9)) | jnp.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mant, jnp.float32) - 1.0


def _uniform16_open(words: jax.Array, n: int) -> jax.Array:
    """``n`` uniforms in (0, 1) from the two 16-bit halves of ``ceil(n/2)`` words.

    ``(h + 1/2) / 2^16``: 65,536 levels, ample for initial interests in
    [-1, 1] and for normal quality noise (inverse CDF, tails to 4.3 σ), at half
    the random words.
    """
    halves = jnp.concatenate([words >> jnp.uint32(16), words & jnp.uint32(0xFFFF)])[:n]
    return (halves.astype(jnp.float32) + 0.5) * (1.0 / 65536.0)


def _half(n: int) -> int:
    return (n + 1) // 2
INTEREST_UPDATES = ("recsim", "additive", "smoothing")


def recsim_topic_means(num_topics: int = 20, min_utility: float = -3.0,
                       max_utility: float = 3.0) -> np.ndarray:
    """RecSim's topic mean qualities: ``linspace(min,0,int(.7T)) ++ linspace(0,max,int(.3T))``."""
    trashy = np.linspace(min_utility, 0.0, int(num_topics * 0.7))
    nutritious = np.linspace(0.0, max_utility, int(num_topics * 0.3))
    means = np.concatenate([trashy, nutritious])
    if means.shape[0] != num_topics:  # int() rounding for T not divisible by 10
        means = np.concatenate([means, np.full(num_topics - means.shape[0], max_utility)])
    return means.astype(np.float32)


@flax.struct.dataclass
class SlateParams:
    """Values of the generative model (float fields; sweep them as ``env.<field>``)."""

    topic_means: jax.Array  # [T] mean quality per topic (topic mode)
    quality_std: jax.Array  # σ_q
    doc_length: jax.Array  # ℓ
    initial_budget: jax.Array  # B_0
    step_penalty: jax.Array  # budget cost of a step without click
    budget_alpha: jax.Array  # α_B
    user_quality_factor: jax.Array  # f_u
    doc_quality_factor: jax.Array  # f_d
    interest_y_intercept: jax.Array  # y
    interest_x_intercept: jax.Array  # x
    update_rate: jax.Array  # η ('additive')
    smoothing_alpha: jax.Array  # α ('smoothing')
    shown_rate: jax.Array  # ν
    # choice model
    no_click_mass: jax.Array
    min_normalizer: jax.Array
    temperature: jax.Array
    attention_prob: jax.Array
    score_scaling: jax.Array
    # multi-task responses
    purchase_bias: jax.Array
    purchase_quality: jax.Array
    purchase_affinity: jax.Array
    return_bias: jax.Array
    return_quality: jax.Array
    # catalogue mode ([1, D] / [1] placeholders in topic mode)
    catalogue_features: jax.Array  # [N, D]
    catalogue_quality: jax.Array  # [N]


@flax.struct.dataclass
class SlateState:
    """One user's state and the current candidates."""

    user: jax.Array  # [D] interests u
    budget: jax.Array  # B
    doc_quality: jax.Array  # [m]
    doc_id: jax.Array  # [m] int32: topic (topic mode) or catalogue row; features are
    # looked up from it (one-hot topic or catalogue row), so the state stays small
    clicks: jax.Array  # clicks so far in the episode
    quality_sum: jax.Array  # sum of clicked qualities in the episode
    t: jax.Array  # steps so far in the episode


@gin.configurable
class SlateEnv(Environment):
    """Slate environment with evolving user interests (see module docstring).

    Args:
      num_candidates: ``m`` candidates per step.
      slate_size: ``k`` items per slate, ``1 <= k <= m``.
      num_topics: ``T`` topics = feature dimension in topic mode (20).
      choice_model: a :class:`~mtrlrec.envs.choice.ChoiceModel`
        (default :class:`~mtrlrec.envs.choice.MultinomialProportional`).
      resample_documents: fresh candidates every step (True) or per episode.
      interest_update: ``'recsim'``, ``'additive'`` or ``'smoothing'``.
      reward_weights: scalarisation of (click, purchase, watch_time, return);
        ``None`` returns the vector reward. Default ``(1, 5, 0, 0)``.
      max_episode_steps: truncation cap (27,000 as RecSim's runner; 0 = none).
      catalogue_features: optional ``[N, D]`` item features (nested lists, or
        an array) -> catalogue mode.
      catalogue_quality: ``[N]`` item qualities (default zeros).
      catalogue_file: ``.npz`` with ``features`` and optional ``quality``
        arrays, instead of the two above.
      user_dim: user-state dimension; must equal the catalogue's feature
        dimension (default: that dimension).
      topic_means, quality_std, doc_length, initial_budget, step_penalty,
      budget_alpha, user_quality_factor, doc_quality_factor,
      interest_y_intercept, interest_x_intercept, update_rate,
      smoothing_alpha, shown_rate, purchase_bias, purchase_quality,
      purchase_affinity, return_bias, return_quality: defaults of
        :class:`SlateParams` (see the module docstring).
    """

    cumulative_metrics = ("click", "clicked_quality", "watch_time", "purchase", "return")

    def __init__(
        self,
        num_candidates: int = 10,
        slate_size: int = 2,
        num_topics: int = 20,
        choice_model: ChoiceModel | None = None,
        resample_documents: bool = True,
        interest_update: str = "recsim",
        reward_weights: Sequence[float] | None = (1.0, 5.0, 0.0, 0.0),
        max_episode_steps: int = 27_000,
        catalogue_features: Any = None,
        catalogue_quality: Any = None,
        catalogue_file: str | None = None,
        user_dim: int | None = None,
        topic_means: Sequence[float] | None = None,
        quality_std: float = 0.1,
        doc_length: float = 4.0,
        initial_budget: float = 200.0,
        step_penalty: float = 0.5,
        budget_alpha: float = 0.9 / 3.4,
        user_quality_factor: float = 0.0,
        doc_quality_factor: float = 1.0,
        interest_y_intercept: float = 0.3,
        interest_x_intercept: float = 1.0,
        update_rate: float = 0.1,
        smoothing_alpha: float = 0.9,
        shown_rate: float = 0.0,
        purchase_bias: float = -2.0,
        purchase_quality: float = 1.0,
        purchase_affinity: float = 1.0,
        return_bias: float = 0.0,
        return_quality: float = 1.0,
    ):
        n = type(self).__name__
        self.num_candidates = check_int(f"{n}.num_candidates", num_candidates, min_value=1)
        self.slate_size = check_int(f"{n}.slate_size", slate_size, min_value=1)
        if self.slate_size > self.num_candidates:
            raise ConfigError(
                f"{n}.slate_size k={self.slate_size} exceeds {n}.num_candidates "
                f"m={self.num_candidates}; expected 1 <= k <= m.")
        self.choice_model = MultinomialProportional() if choice_model is None else choice_model
        if not isinstance(self.choice_model, ChoiceModel):
            raise ConfigError(f"{n}.choice_model must be a ChoiceModel, got {choice_model!r}.")
        self.resample_documents = bool(resample_documents)
        if interest_update not in INTEREST_UPDATES:
            raise ConfigError(
                f"{n}.interest_update must be one of {INTEREST_UPDATES}, got {interest_update!r}.")
        self.interest_update = interest_update
        if reward_weights is None:
            self.reward_weights = None
            self.reward_names = REWARD_NAMES
        else:
            if isinstance(reward_weights, (str, bytes)) or not hasattr(reward_weights, "__len__"):
                raise ConfigError(
                    f"{n}.reward_weights must be a list of {len(REWARD_NAMES)} numbers "
                    f"{list(REWARD_NAMES)} or None, got {reward_weights!r}.")
            if len(reward_weights) != len(REWARD_NAMES):
                raise ConfigError(
                    f"{n}.reward_weights has {len(reward_weights)} entries; expected "
                    f"{len(REWARD_NAMES)}, one per reward component {list(REWARD_NAMES)}.")
            self.reward_weights = check_floats(f"{n}.reward_weights", reward_weights)
            self.reward_names = ("reward",)
        self.max_episode_steps = check_int(
            f"{n}.max_episode_steps", max_episode_steps, min_value=0)

        # -- items: topic mode or catalogue mode ---------------------------------
        if catalogue_file is not None:
            if catalogue_features is not None:
                raise ConfigError(f"give {n}.catalogue_file or {n}.catalogue_features, not both.")
            try:
                with np.load(catalogue_file) as z:
                    catalogue_features = np.asarray(z["features"])
                    if catalogue_quality is None and "quality" in z:
                        catalogue_quality = np.asarray(z["quality"])
            except (OSError, KeyError, ValueError) as e:
                raise ConfigError(
                    f"{n}.catalogue_file={catalogue_file!r}: cannot read an .npz with a "
                    f"'features' array ({e}).") from None
        self.catalogue = catalogue_features is not None
        if self.catalogue:
            feats = np.asarray(catalogue_features, np.float32)
            if feats.ndim != 2 or feats.shape[0] < 1 or not np.all(np.isfinite(feats)):
                raise ConfigError(
                    f"{n}.catalogue_features must be a finite [num_items, dim] array, got shape "
                    f"{feats.shape}.")
            self.num_items, self.feature_dim = feats.shape
            if self.num_candidates > self.num_items:
                raise ConfigError(
                    f"{n}.num_candidates m={self.num_candidates} exceeds the catalogue's "
                    f"{self.num_items} items.")
            if catalogue_quality is None:
                quality = np.zeros(self.num_items, np.float32)
            else:
                quality = np.asarray(catalogue_quality, np.float32)
                if quality.shape != (self.num_items,) or not np.all(np.isfinite(quality)):
                    raise ConfigError(
                        f"{n}.catalogue_quality must be a finite array of {self.num_items} "
                        f"values (one per catalogue item), got shape {quality.shape}.")
            self._catalogue = (feats, quality)
            self.fixed_catalogue = self.num_candidates == self.num_items
            if user_dim is not None and int(user_dim) != self.feature_dim:
                raise ConfigError(
                    f"{n}.user_dim={user_dim} does not match the catalogue's feature dimension "
                    f"{self.feature_dim}; user interests and item features must have the same "
                    "dimension.")
            self.num_topics = 0
        else:
            if user_dim is not None and int(user_dim) != int(num_topics):
                raise ConfigError(
                    f"{n}.user_dim={user_dim} does not match {n}.num_topics={num_topics} (the "
                    "item feature dimension in topic mode).")
            self.num_topics = check_int(f"{n}.num_topics", num_topics, min_value=1)
            self.feature_dim = self.num_topics
            self.num_items = 0
            self.fixed_catalogue = False
            self._catalogue = (np.zeros((1, self.feature_dim), np.float32),
                               np.zeros(1, np.float32))
        self.user_dim = self.feature_dim

        if topic_means is None:
            topic_means = recsim_topic_means(max(self.num_topics, 1)).tolist()
        topic_means = check_floats(f"{n}.topic_means", topic_means,
                                   length=max(self.num_topics, 1) if self.num_topics else None)
        self._defaults = dict(
            topic_means=topic_means,
            quality_std=check_float(f"{n}.quality_std", quality_std, low=0.0),
            doc_length=check_float(f"{n}.doc_length", doc_length, low=0.0, low_open=True),
            initial_budget=check_float(f"{n}.initial_budget", initial_budget, low=0.0,
                                       low_open=True),
            step_penalty=check_float(f"{n}.step_penalty", step_penalty, low=0.0),
            budget_alpha=check_float(f"{n}.budget_alpha", budget_alpha),
            user_quality_factor=check_float(f"{n}.user_quality_factor", user_quality_factor),
            doc_quality_factor=check_float(f"{n}.doc_quality_factor", doc_quality_factor),
            interest_y_intercept=check_float(f"{n}.interest_y_intercept", interest_y_intercept,
                                             low=0.0),
            interest_x_intercept=check_float(f"{n}.interest_x_intercept", interest_x_intercept,
                                             low=0.0, low_open=True),
            update_rate=check_float(f"{n}.update_rate", update_rate, low=0.0),
            smoothing_alpha=check_float(f"{n}.smoothing_alpha", smoothing_alpha, low=0.0,
                                        high=1.0),
            shown_rate=check_float(f"{n}.shown_rate", shown_rate),
            no_click_mass=1.0, min_normalizer=-1.0, temperature=1.0, attention_prob=0.65,
            score_scaling=0.05,
            purchase_bias=check_float(f"{n}.purchase_bias", purchase_bias),
            purchase_quality=check_float(f"{n}.purchase_quality", purchase_quality),
            purchase_affinity=check_float(f"{n}.purchase_affinity", purchase_affinity),
            return_bias=check_float(f"{n}.return_bias", return_bias),
            return_quality=check_float(f"{n}.return_quality", return_quality),
        )
        self._defaults.update(self.choice_model.param_values())
        if not self.catalogue:  # one-hot items and |u| <= 1: affinities in [-1, 1]
            self.choice_model.check_scores_bound(1.0, f"{n} in topic mode")

    # -- spec ------------------------------------------------------------------
    def default_params(self) -> SlateParams:
        d = {k: jnp.asarray(v, jnp.float32) for k, v in self._defaults.items()}
        feats, quality = self._catalogue
        return SlateParams(catalogue_features=jnp.asarray(feats),
                           catalogue_quality=jnp.asarray(quality), **d)

    def check_params(self, params: SlateParams) -> None:
        """Host-side validation of concrete params (before compilation)."""
        n = type(self).__name__
        p = jax.tree.map(np.asarray, params)
        if p.topic_means.shape[-1] != max(self.num_topics, 1):
            raise ConfigError(
                f"{n} params.topic_means has {p.topic_means.shape[-1]} entries, expected "
                f"{max(self.num_topics, 1)} (num_topics).")
        if p.catalogue_features.shape[-1] != self.user_dim:
            raise ConfigError(
                f"{n} params.catalogue_features has dimension {p.catalogue_features.shape[-1]} "
                f"but the user state has dimension {self.user_dim}.")
        for name in ("attention_prob", "smoothing_alpha"):
            v = getattr(p, name)
            if np.any((v < 0) | (v > 1)):
                raise ConfigError(f"{n} params.{name} must be a probability in [0, 1], got {v}.")
        if np.any(p.initial_budget <= 0):
            raise ConfigError(f"{n} params.initial_budget must be > 0, got {p.initial_budget}.")
        if np.any(p.quality_std < 0):
            raise ConfigError(f"{n} params.quality_std must be >= 0, got {p.quality_std}.")

    def observation_spec(self, params=None):
        m, d = self.num_candidates, self.feature_dim
        hi = 1.0 if not self.catalogue else np.inf
        return Dict({"user": Box(-1.0, 1.0, (d,)), "doc": Box(-hi, hi, (m, d))})

    def action_spec(self, params=None):
        return Slate(self.num_candidates, self.slate_size, distinct=True)

    # -- dynamics ----------------------------------------------------------------
    # Randomness: every step draws one block of 32-bit words from its key
    # (``jax.random.bits``) and carves all its uniforms, topics and normals out
    # of it, instead of splitting keys for each draw; random-number generation
    # is most of the cost of a step on CPU.
    def _num_doc_words(self) -> int:
        return self.num_candidates + _half(self.num_candidates) if not self.catalogue else 0

    def _num_user_words(self) -> int:
        return _half(self.user_dim)

    def _sample_docs(self, key, words, params):
        """``m`` candidates: quality ``[m]`` and ids ``[m]`` (topics or catalogue rows).

        Topic mode: ``c = word mod T`` (bias < T / 2^32) from ``m`` words and
        ``q = mu_c + sigma_q * Phi^{-1}(u)`` from 16-bit uniforms of ``m/2`` more.
        Catalogue mode: ``m`` rows without replacement drawn with ``key``.
        """
        m = self.num_candidates
        if not self.catalogue:
            topic = (words[:m] % jnp.uint32(self.num_topics)).astype(jnp.int32)
            z = jnp.sqrt(2.0) * jax.lax.erf_inv(2.0 * _uniform16_open(words[m:], m) - 1.0)
            quality = params.topic_means[topic] + params.quality_std * z
            return quality, topic
        if self.fixed_catalogue:
            ids = jnp.arange(m, dtype=jnp.int32)
        else:
            ids = jax.random.choice(key, self.num_items, (m,), replace=False).astype(jnp.int32)
        return params.catalogue_quality[ids], ids

    def _new_user(self, words):
        """``u ~ U(-1, 1)^D`` from ``D/2`` words (16-bit uniforms)."""
        return 2.0 * _uniform16_open(words, self.user_dim) - 1.0

    def _state(self, user, docs, params):
        quality, ids = docs
        z = jnp.float32(0.0)
        return SlateState(user=user, budget=params.initial_budget,
                          doc_quality=quality, doc_id=ids, clicks=z, quality_sum=z,
                          t=jnp.int32(0))

    def features(self, ids, params):
        """Item features ``[..., D]`` of item ids (topics or catalogue rows)."""
        if not self.catalogue:
            return jax.nn.one_hot(ids, self.num_topics, dtype=jnp.float32)
        return params.catalogue_features[ids]

    def _obs(self, state, params):
        return {"user": state.user, "doc": self.features(state.doc_id, params)}

    def reset_env(self, key, params):
        nd = self._num_doc_words()
        nu = self._num_user_words()
        words = jax.random.bits(key, (nu + nd,), jnp.uint32)
        docs = self._sample_docs(jax.random.fold_in(key, 1), words[nu:], params)
        state = self._state(self._new_user(words[:nu]), docs, params)
        return self._obs(state, params), state

    def _update_interests(self, u, d, shown_mean, click, coin, params):
        if self.interest_update == "recsim":
            a = params.interest_y_intercept - (
                params.interest_y_intercept / params.interest_x_intercept) * jnp.abs(u)
            delta = a * d * (d - u)
            p_up = jnp.dot((u + 1.0) / 2.0, d)
            moved = jnp.clip(jnp.where(coin < p_up, u + delta, u - delta), -1.0, 1.0)
            return jnp.where(click, moved, u)
        if self.interest_update == "additive":
            new = u + params.update_rate * click * d + params.shown_rate * shown_mean
        else:  # smoothing
            target = jnp.where(click, d, u)
            new = (params.smoothing_alpha * u + (1.0 - params.smoothing_alpha) * target
                   + params.shown_rate * shown_mean)
        return jnp.clip(new, -1.0, 1.0)

    def step_env(self, key, state, action, params):
        """One step for one user; ``action`` is ``[k]`` candidate indices (int32)."""
        words = jax.random.bits(key, (4 + self._num_doc_words(),), jnp.uint32)
        return self._step(key, words, state, action, params)

    def _step(self, key, words, state, action, params):
        k = self.slate_size
        # words[0]: choice, [1]: interest coin, [2]: purchase, [3]: return, [4:]: candidates
        unif = _uniform(words[:4])
        action = jnp.asarray(action, jnp.int32)
        ids = state.doc_id[action]  # [k]
        feats = self.features(ids, params)  # [k, D]
        quality = state.doc_quality[action]  # [k]
        # affinities s_i = u . d_i (a gather of u_c for one-hot topics)
        scores = state.user[ids] if not self.catalogue else feats @ state.user  # [k]
        probs = self.choice_model.probabilities(scores, params)  # [k+1]
        # inverse-CDF draw over k+1 outcomes (as numpy's choice)
        idx = jnp.minimum(jnp.sum(jnp.cumsum(probs) <= unif[0] * jnp.sum(probs)), k)
        click = idx < k
        pos = jnp.minimum(idx, k - 1)
        d, q, s = feats[pos], quality[pos], scores[pos]
        clickf = click.astype(jnp.float32)
        watch = clickf * jnp.minimum(state.budget, params.doc_length)

        user = self._update_interests(state.user, d, jnp.mean(feats, 0), click, unif[1], params)
        utility = (params.user_quality_factor * self.choice_model.item_utility(s, params)
                   + params.doc_quality_factor * q)
        budget = jnp.where(click, state.budget - watch + params.budget_alpha * watch * utility,
                           state.budget - params.step_penalty)
        terminated = budget <= 0.0
        t = state.t + 1
        truncated = jnp.bool_(False)
        if self.max_episode_steps:
            truncated = jnp.logical_and(t >= self.max_episode_steps, ~terminated)

        p_buy = jax.nn.sigmoid(params.purchase_bias + params.purchase_quality * q
                               + params.purchase_affinity * s)
        purchase = clickf * (unif[2] < p_buy)
        clicks = state.clicks + clickf
        quality_sum = state.quality_sum + clickf * q
        mean_q = quality_sum / jnp.maximum(clicks, 1.0)
        p_ret = jax.nn.sigmoid(params.return_bias + params.return_quality * mean_q)
        returned = terminated * (unif[3] < p_ret)
        components = jnp.stack([clickf, purchase.astype(jnp.float32), watch,
                                returned.astype(jnp.float32)])
        if self.reward_weights is None:
            reward = components
        else:
            reward = jnp.dot(jnp.asarray(self.reward_weights, jnp.float32), components)

        if self.resample_documents:
            q_new, ids_new = self._sample_docs(jax.random.fold_in(key, 1), words[4:], params)
        else:
            q_new, ids_new = state.doc_quality, state.doc_id
        new_state = SlateState(user=user, budget=budget,
                               doc_quality=q_new, doc_id=ids_new, clicks=clicks,
                               quality_sum=quality_sum, t=t)
        slot = jnp.arange(k) == idx
        info = {
            "click": clickf,
            "purchase": components[1],
            "watch_time": watch,
            "return": components[3],
            "clicked_quality": clickf * q,
            "budget": budget,
            "slate_click": slot.astype(jnp.float32),
            "slate_quality": quality,
        }
        return self._obs(new_state, params), new_state, reward, terminated, truncated, info

    def step(self, key, state, action, params=None):
        """One step with auto-reset (cheaper than the generic one).

        The reset state shares the candidates freshly drawn by the step
        (independent of the past either way), so a reset draws only the new
        user's ``D`` uniforms, from the same block of random words as the
        step. With ``resample_documents=False`` a full reset is drawn.
        """
        if params is None:
            params = self.default_params()
        if not self.resample_documents:
            return super().step(key, state, action, params)
        n_step = 4 + self._num_doc_words()
        words = jax.random.bits(key, (n_step + self._num_user_words(),), jnp.uint32)
        obs, new_state, reward, terminated, truncated, info = self._step(
            key, words[:n_step], state, action, params)
        done = jnp.logical_or(terminated, truncated)
        info = dict(info)
        info["final_observation"] = obs
        # Only the user's fields are reset; the candidates are shared.
        zero = jnp.float32(0.0)
        new_state = new_state.replace(
            user=jnp.where(done, self._new_user(words[n_step:]), new_state.user),
            budget=jnp.where(done, params.initial_budget, new_state.budget),
            clicks=jnp.where(done, zero, new_state.clicks),
            quality_sum=jnp.where(done, zero, new_state.quality_sum),
            t=jnp.where(done, jnp.int32(0), new_state.t))
        return self._obs(new_state, params), new_state, reward, terminated, truncated, info

    # -- helpers for oracle agents ----------------------------------------------------
    def click_probabilities(self, obs, params=None) -> jax.Array:
        """True click probability of each candidate shown alone, ``[m]`` (myopic oracle)."""
        params = self.default_params() if params is None else params
        scores = obs["doc"] @ obs["user"]
        return jax.vmap(lambda s: self.choice_model.probabilities(s[None], params)[0])(scores)


@gin.configurable
def recsim_interest_evolution(num_candidates: int = 10, slate_size: int = 2,
                              choice_model: ChoiceModel | None = None,
                              max_episode_steps: int = 27_000) -> SlateEnv:
    """RecSim 0.2.4's ``interest_evolution`` environment, reward = clicked watch time.

    ``create_environment({'num_candidates': m, 'slate_size': k,
    'resample_documents': True})`` with ``MultinomialProportionalChoiceModel``
    (no-click mass 1, min normaliser -1), ``UtilityModelVideoSampler`` and
    ``UtilityModelUserSampler`` defaults, and the runner's 27,000-step cap.
    """
    return SlateEnv(
        num_candidates=num_candidates, slate_size=slate_size, num_topics=20,
        choice_model=MultinomialProportional() if choice_model is None else choice_model,
        resample_documents=True, interest_update="recsim",
        reward_weights=(0.0, 0.0, 1.0, 0.0), max_episode_steps=max_episode_steps)


__all__ = ["REWARD_NAMES", "SlateEnv", "SlateParams", "SlateState", "recsim_interest_evolution",
           "recsim_topic_means"]
