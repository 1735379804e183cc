"""Gymnasium adapters: one simulated user, or a batch of users in one compiled call.

:func:`to_gymnasium` wraps any :class:`~mtrlrec.core.env.Environment` as a
``gymnasium.Env``; :func:`to_gymnasium_vector` as a native
``gymnasium.vector.VectorEnv`` that steps all ``num_envs`` users in one
``jit(vmap(step))`` call (not a ``SyncVectorEnv`` of single environments).
Guide and worked training loop: ``docs/gymnasium.md``.

Conventions shared by both adapters:

* **Randomness.** Every user owns a JAX key chain: ``reset(seed=s)`` starts it
  at ``PRNGKey(s)`` (user ``i`` of a vector env at ``split(PRNGKey(s), N)[i]``,
  or at ``PRNGKey(s_i)`` for a list of seeds); a reset or step with chain key
  ``c`` uses ``fold_in(c, 1)`` and moves the chain to ``fold_in(c, 0)``. A vector
  env reset with seeds ``[s_0, ..., s_{N-1}]`` therefore replays the same users
  as ``N`` single envs reset with those seeds, given the same actions.
* **Rewards.** ``reward`` is a float. An environment with a vector of per-task
  rewards (click, conversion, ...) needs ``reward_weights`` ``w``; then
  ``reward = w · r`` and ``info['reward/<name>']`` holds each component ``r_j``.
* **Slates.** A slate action is ``k`` *distinct* candidate indices. The action
  space is a :class:`SlateSpace` (a ``MultiDiscrete`` whose ``sample()`` draws
  ``k`` distinct items uniformly, in uniformly random order, and whose
  ``contains`` rejects repeats); a step given a slate with a repeated item
  raises :class:`~mtrlrec.core.errors.ConfigError` (a ``ValueError``) and leaves
  the environment as it was. Items outside ``0 .. m-1``, non-integer actions and
  actions of the wrong shape are rejected the same way.
* **Speed.** Step and auto-reset are one compiled call (the environment's own
  ``step``, which computes the next user's reset without branching). The single
  env keeps its whole state in a few flat ``uint32`` device buffers and returns
  all its outputs bit-exactly in a few more, each at most 512 bytes, so that a
  step is one dispatch, one host copy, and runs on XLA's sequential CPU path
  (see :class:`_Layout`). The vector env returns NumPy views of the device
  arrays (zero-copy on CPU).

Gymnasium is imported only inside the functions (it is a test extra, and
``mtrlrec.config`` imports every module of the package at start).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core import rng
from mtrlrec.core import spaces as mspaces
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_floats, check_int

#: ``metadata['autoreset_mode']`` of the vector env, as the value of
#: ``gymnasium.vector.AutoresetMode.SAME_STEP``.
AUTORESET_MODE = "SameStep"

_ARRAY_TYPES = ("numpy", "jax")


# --------------------------------------------------------------------------------------
# Pure JAX part: one user's reset and step, action checks, bit-exact packing
# --------------------------------------------------------------------------------------
def _seed_key(name: str, seed: Any) -> jax.Array:
    """``PRNGKey(seed)`` for any non-negative integer seed (high words folded in)."""
    seed = check_int(name, seed, min_value=0)
    key = jax.random.PRNGKey(seed & 0xFFFFFFFF)
    hi = seed >> 32
    while hi:
        key = jax.random.fold_in(key, hi & 0xFFFFFFFF)
        hi >>= 32
    return key


def _action_valid(space: mspaces.Space, action: jax.Array) -> jax.Array:
    """Whether one user's (int32) action is in ``space``: range, and distinct slate items."""
    if isinstance(space, mspaces.Discrete):
        return (action >= 0) & (action < space.n)
    if isinstance(space, mspaces.Slate):
        ok = jnp.all((action >= 0) & (action < space.num_candidates))
        if space.distinct:
            ok = ok & (jnp.sum(action[:, None] == action[None, :]) == space.slate_size)
        return ok
    raise ConfigError(f"no Gymnasium action adapter for the action space {space}.")


class _Layout:
    """Where each leaf of a (per-user) pytree lives in a flat ``uint32`` buffer.

    Floats are stored as their float32 bits, signed integers as int32 bits and
    booleans as 0/1, so packing is exact. ``pack``/``unpack`` run under ``jit``
    (per user; ``vmap`` them for a batch), ``read`` runs on the host and returns
    NumPy views of the buffer (copies only for booleans and non-32-bit dtypes).

    With ``chunk`` the buffer is a tuple of arrays of at most ``chunk`` words
    (leaves are cut at chunk boundaries). XLA's CPU runtime runs a program whose
    buffers are all <= 512 bytes one kernel after the other in one thread, and
    anything larger as a task graph over its thread pool, which costs far more
    than the kernels of a one-user step: 128-word chunks halved the single-env
    step of the RecSim configuration (about 90 -> 45 µs, 2026-12-02).
    """

    def __init__(self, tree: Any, chunk: int | None = None):
        leaves, self.treedef = jax.tree.flatten(tree)
        self.fields = []
        offset = 0
        for leaf in leaves:
            dtype = np.dtype(leaf.dtype)
            if dtype == np.bool_:
                kind = "b"
            elif np.issubdtype(dtype, np.floating):
                kind = "f"
            elif np.issubdtype(dtype, np.unsignedinteger):
                kind = "u"
            else:
                kind = "i"
            size = int(np.prod(leaf.shape, dtype=np.int64))
            self.fields.append((offset, size, tuple(leaf.shape), dtype, kind))
            offset += size
        self.size = offset
        self.chunk = chunk
        # chunk c holds words [c*chunk, (c+1)*chunk): (field, start, end) pieces, in order
        bounds = [(c, min(c + chunk, offset)) for c in range(0, offset, chunk)] if chunk else []
        self.chunks = [[(j, max(f[0], c0), min(f[0] + f[1], c1))
                        for j, f in enumerate(self.fields)
                        if max(f[0], c0) < min(f[0] + f[1], c1)] for c0, c1 in bounds]

    @staticmethod
    def _to_words(x, kind):
        x = jnp.asarray(x).reshape(-1)
        if kind == "f":
            return jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
        if kind == "i":
            return jax.lax.bitcast_convert_type(x.astype(jnp.int32), jnp.uint32)
        return x.astype(jnp.uint32)

    def pack(self, tree: Any) -> Any:
        words = [self._to_words(leaf, f[4]) for leaf, f in zip(jax.tree.leaves(tree), self.fields)]
        if not self.chunk:
            return jnp.concatenate(words) if words else jnp.zeros((0,), jnp.uint32)
        out = []
        for pieces in self.chunks:
            parts = [words[j][a - self.fields[j][0]:b - self.fields[j][0]] for j, a, b in pieces]
            out.append(parts[0] if len(parts) == 1 else jnp.concatenate(parts))
        return tuple(out)

    def unpack(self, buf: Any) -> Any:
        if self.chunk:
            parts = [[] for _ in self.fields]
            for c, pieces in enumerate(self.chunks):
                c0 = c * self.chunk
                for j, a, b in pieces:
                    parts[j].append(buf[c][a - c0:b - c0])
            flat = [p[0] if len(p) == 1 else jnp.concatenate(p) for p in parts]
        else:
            flat = [buf[f[0]:f[0] + f[1]] for f in self.fields]
        leaves = []
        for x, (_, _, shape, dtype, kind) in zip(flat, self.fields):
            if kind == "f":
                x = jax.lax.bitcast_convert_type(x, jnp.float32)
            elif kind == "i":
                x = jax.lax.bitcast_convert_type(x, jnp.int32)
            elif kind == "b":
                x = x != 0
            leaves.append(x.astype(dtype).reshape(shape))
        return jax.tree.unflatten(self.treedef, leaves)

    def host(self, buf: Any) -> np.ndarray:
        """The whole buffer on the host (chunks joined: one copy of a few hundred words)."""
        if not self.chunk:
            return np.asarray(buf)
        return np.concatenate([np.asarray(c) for c in buf]) if len(buf) > 1 else np.array(buf[0])

    def read(self, buf: np.ndarray, batch: int | None = None, scalars: Any = None) -> Any:
        """Host-side view of ``buf`` (``[size]``, or ``[size, batch]`` from ``vmap(out_axes=1)``).

        ``scalars``: a list with one bool per leaf; 0-d leaves marked True come back
        as NumPy scalars instead of 0-d arrays (unbatched buffers only).
        """
        views = {"f": buf.view(np.float32), "i": buf.view(np.int32), "u": buf, "b": buf}
        leaves = []
        for j, (offset, size, shape, dtype, kind) in enumerate(self.fields):
            view = views[kind]
            if batch is None:
                x = view[offset] if scalars is not None and scalars[j] else (
                    view[offset:offset + size].reshape(shape))
            elif not shape:
                x = view[offset]
            else:  # [size, batch] rows -> [batch, *shape] (a view for 1-d fields)
                x = view[offset:offset + size].T
                if len(shape) > 1:
                    x = x.reshape((batch,) + shape)
            if kind == "b":
                x = x != 0
            elif view.dtype != dtype:
                x = x.astype(dtype)
            leaves.append(x)
        return jax.tree.unflatten(self.treedef, leaves)


class _UserProgram:
    """One user's reset and step with the adapter's conventions (traced under jit/vmap)."""

    def __init__(self, env: Environment, params: Any, reward_weights: Any, where: str):
        if not isinstance(env, Environment):
            raise ConfigError(f"{where}: env must be an mtrlrec Environment, got {env!r}.")
        self.env = env
        if params is None:
            params = env.default_params()
        else:
            env.check_params(params)
        self.params = params
        self.obs_spec = env.observation_spec(params)
        self.act_spec = env.action_spec(params)
        if not isinstance(self.act_spec, (mspaces.Discrete, mspaces.Slate)):
            raise ConfigError(
                f"{where}: {env.name}'s action space {self.act_spec} has no Gymnasium adapter "
                "(Discrete and Slate actions are supported).")
        self.episodic = bool(env.episodic)

        # Shapes of one step, without compiling anything.
        key = jax.ShapeDtypeStruct(jax.random.PRNGKey(0).shape, jnp.uint32)
        _, state = jax.eval_shape(env.reset, key, params)
        action = jax.ShapeDtypeStruct(self.act_spec.shape, jnp.int32)
        out = jax.eval_shape(env.step, key, state, action, params)
        reward = out[2]
        if reward.ndim == 0:
            if reward_weights is not None:
                raise ConfigError(
                    f"{where}: reward_weights is only for vector rewards; {env.name} returns "
                    "a scalar reward.")
            self.weights = None
        elif reward.ndim == 1:
            n = reward.shape[0]
            names = tuple(env.reward_names)
            self.reward_names = names if len(names) == n else tuple(f"r{i}" for i in range(n))
            if reward_weights is None:
                raise ConfigError(
                    f"{where}: {env.name} returns {n} per-task rewards "
                    f"{list(self.reward_names)}; pass reward_weights=[...] ({n} numbers) to "
                    "scalarise them (the components stay in info['reward/<name>']).")
            self.weights = check_floats(f"{where}.reward_weights", reward_weights, length=n)
        else:
            raise ConfigError(f"{where}: {env.name}'s reward has shape {reward.shape}; "
                              "expected a scalar or a vector of per-task rewards.")

    def reset(self, key):
        """``key -> ((chain key, state), obs)`` for one user."""
        obs, state = self.env.reset(rng.fold_in(key, 1), self.params)
        return (rng.fold_in(key, 0), state), obs

    def step(self, carry, action):
        """One user's step with auto-reset.

        Returns ``(carry, obs, out)``: ``obs`` is the observation after the
        auto-reset (the next episode's first one where the episode ended), and
        ``out`` holds ``final_obs`` (the observation the step produced),
        ``reward`` (scalarised), ``terminated``, ``truncated`` and ``info``.
        """
        chain, state = carry
        # fold_in written out as integer ops (mtrlrec.core.rng): jax.random.split is a
        # rolled loop of small kernels on CPU, a sizeable part of a one-user step.
        chain, k = rng.fold_in(chain, 0), rng.fold_in(chain, 1)
        obs, state, reward, terminated, truncated, info = self.env.step(
            k, state, action, self.params)
        info = dict(info)
        final_obs = info.pop("final_observation", obs)
        reward = jnp.asarray(reward, jnp.float32)
        if self.weights is not None:
            for i, name in enumerate(self.reward_names):
                info[f"reward/{name}"] = reward[i]
            reward = jnp.dot(jnp.asarray(self.weights, jnp.float32), reward)
        out = {"final_obs": final_obs, "reward": reward,
               "terminated": jnp.asarray(terminated, jnp.bool_),
               "truncated": jnp.asarray(truncated, jnp.bool_), "info": info}
        return (chain, state), obs, out

    def valid(self, action):
        return _action_valid(self.act_spec, action)


def _select(ok, new, old):
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


# --------------------------------------------------------------------------------------
# Host-side action checks (messages name the argument and the first bad entry)
# --------------------------------------------------------------------------------------
def _describe_space(space: mspaces.Space) -> str:
    if isinstance(space, mspaces.Discrete):
        return f"an item in 0..{space.n - 1}"
    extra = "distinct " if space.distinct else ""
    return f"{space.slate_size} {extra}items in 0..{space.num_candidates - 1}"


def _host_action(action: Any, space: mspaces.Space, batch: int | None, where: str,
                 name: str):
    """Checks shape and dtype (metadata only); returns an int32 array (NumPy or jax)."""
    shape = tuple(space.shape) if batch is None else (batch,) + tuple(space.shape)
    if isinstance(action, jax.Array):
        arr = action
    else:
        try:
            arr = np.asarray(action)
        except Exception:  # ragged lists and the like
            raise ConfigError(f"{where}: {name} must be an integer array of shape {shape}, "
                              f"got {action!r}.") from None
    if arr.shape != shape:
        what = ("(num_envs,)" if batch is not None and not space.shape else
                "(num_envs, slate_size)" if batch is not None else
                "(slate_size,)" if space.shape else "() (one integer)")
        raise ConfigError(f"{where}: {name} must have shape {shape} {what}, got {arr.shape}.")
    kind = np.dtype(arr.dtype).kind
    if kind not in "iu":
        raise ConfigError(f"{where}: {name} must be integers ({_describe_space(space)}), got "
                          f"dtype {np.dtype(arr.dtype)}.")
    if isinstance(arr, jax.Array):  # values are checked in the compiled step
        return arr if arr.dtype == jnp.int32 else arr.astype(jnp.int32)
    if batch is None:  # one user: a few ints, checked here (cheaper than any array op)
        values = arr.tolist()
        if isinstance(space, mspaces.Discrete):
            ok = 0 <= values < space.n
        else:
            m = space.num_candidates
            ok = all(0 <= v < m for v in values) and (
                not space.distinct or len(set(values)) == len(values))
        if not ok:
            _raise_bad_action(arr, space, batch, where, name)
        return arr if arr.dtype == np.int32 else arr.astype(np.int32)
    if arr.dtype == np.int32:
        return arr
    if arr.dtype.itemsize >= 4 and arr.size and (  # int32 would wrap these around
            arr.max() > np.iinfo(np.int32).max or arr.min() < np.iinfo(np.int32).min):
        _raise_bad_action(arr, space, batch, where, name)
    return arr.astype(np.int32)


def _raise_bad_action(action: Any, space: mspaces.Space, batch: int | None, where: str,
                      name: str) -> None:
    """Raises ConfigError naming the first entry of ``action`` outside ``space``."""
    a = np.asarray(action).astype(np.int64)
    rows = a.reshape((1,) + a.shape) if batch is None else a
    for i, row in enumerate(rows):
        label = name if batch is None else f"{name}[{i}]"
        value = row.tolist()
        if isinstance(space, mspaces.Discrete):
            if not 0 <= row < space.n:
                raise ConfigError(f"{where}: {label} = {value} is outside 0..{space.n - 1} "
                                  f"({space.n} actions).")
            continue
        m = space.num_candidates
        bad = [int(x) for x in row if not 0 <= x < m]
        if bad:
            raise ConfigError(f"{where}: {label} = {value} has item {bad[0]} outside 0..{m - 1} "
                              f"(num_candidates = {m}).")
        if space.distinct and len(set(row.tolist())) < len(row):
            seen, rep = set(), None
            for x in row.tolist():
                if x in seen:
                    rep = x
                    break
                seen.add(x)
            raise ConfigError(
                f"{where}: {label} = {value} repeats item {rep}; a slate needs "
                f"{space.slate_size} distinct items (action_space.sample() draws valid slates).")
    raise ConfigError(f"{where}: {name} is not in the action space ({_describe_space(space)}).")


def _check_options(options: Any, where: str, allowed: tuple[str, ...]) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: options must be a dict or None, got {options!r}.")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: options has unknown keys {unknown}; supported: "
                          f"{list(allowed) or 'none'}.")
    return options


# --------------------------------------------------------------------------------------
# Gymnasium classes (built on first use; gymnasium is an optional dependency)
# --------------------------------------------------------------------------------------
def _gym_space(space: mspaces.Space, classes) -> Any:
    from gymnasium import spaces as gspaces

    if isinstance(space, mspaces.Discrete):
        return gspaces.Discrete(space.n)
    if isinstance(space, mspaces.Slate):
        if space.distinct:
            return classes.SlateSpace(space.num_candidates, space.slate_size)
        return gspaces.MultiDiscrete([space.num_candidates] * space.slate_size)
    if isinstance(space, mspaces.Box):
        low = np.broadcast_to(np.asarray(space.low, np.float32), space.shape)
        high = np.broadcast_to(np.asarray(space.high, np.float32), space.shape)
        return gspaces.Box(low, high, tuple(space.shape), np.float32)
    if isinstance(space, mspaces.Dict):
        return gspaces.Dict({k: _gym_space(s, classes) for k, s in space.spaces.items()})
    raise ConfigError(f"no Gymnasium equivalent for the space {space}.")


@functools.cache
def _classes():
    import gymnasium
    from gymnasium import spaces as gspaces
    from gymnasium.vector import AutoresetMode, VectorEnv
    from gymnasium.vector.utils import batch_space

    class SlateSpace(gspaces.MultiDiscrete):
        """``slate_size`` distinct indices into ``num_candidates`` items (a slate).

        A ``MultiDiscrete`` of shape ``batch_shape + (slate_size,)`` (every entry
        in ``0 .. num_candidates-1``) whose ``sample()`` returns valid slates, drawn
        uniformly over ordered ``k``-subsets, and whose ``contains`` also requires
        the items of each slate to be distinct. Libraries that know
        ``MultiDiscrete`` (Stable-Baselines3, CleanRL) accept it; a policy that
        samples each position independently may still repeat an item, which the
        environment rejects.
        """

        def __init__(self, num_candidates: int, slate_size: int,
                     batch_shape: Sequence[int] = (), seed: Any = None):
            m = check_int("SlateSpace.num_candidates", num_candidates, min_value=1)
            k = check_int("SlateSpace.slate_size", slate_size, min_value=1)
            if k > m:
                raise ConfigError(f"SlateSpace.slate_size k={k} exceeds num_candidates m={m}; "
                                  "expected 1 <= k <= m.")
            self.num_candidates, self.slate_size = m, k
            self.batch_shape = tuple(int(b) for b in batch_shape)
            self._count = int(np.prod(self.batch_shape, dtype=np.int64))
            super().__init__(np.full(self.batch_shape + (k,), m, np.int64), dtype=np.int64,
                             seed=seed)

        def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
            if mask is not None or probability is not None:
                raise NotImplementedError(
                    "SlateSpace.sample draws uniform slates; it takes no mask or probability.")
            m, k, n = self.num_candidates, self.slate_size, self._count
            rng_ = self.np_random
            if n == 1 and 2 * k <= m:  # one slate: the same draws in plain Python (faster)
                picked = []
                for j, u in enumerate(rng_.random(k).tolist()):
                    x = min(int(u * (m - j)), m - j - 1)
                    for prev in sorted(picked):
                        x += x >= prev
                    picked.append(x)
                out = np.array(picked, self.dtype)
                return out if not self.batch_shape else out.reshape(self.shape)
            if 2 * k <= m:  # sequential draws without replacement, O(n k^2)
                # position j draws x_j in 0..m-1-j: the x_j-th item not drawn before it
                out = np.empty((n, k), np.int64)
                for j in range(k):
                    x = rng_.integers(0, m - j, n)
                    if j:
                        earlier = out[:, :1] if j == 1 else np.sort(out[:, :j], axis=1)
                        for prev in earlier.T:  # ascending earlier picks
                            x += x >= prev
                    out[:, j] = x
            else:
                out = np.argsort(rng_.random((n, m)), axis=1)[:, :k]
            return out.reshape(self.shape).astype(self.dtype, copy=False)

        def contains(self, x: Any) -> bool:
            if not super().contains(x):
                return False
            s = np.sort(np.asarray(x), axis=-1)
            return bool(np.all(s[..., 1:] != s[..., :-1]))

        def __eq__(self, other: Any) -> bool:
            return isinstance(other, SlateSpace) and super().__eq__(other)

        def __repr__(self) -> str:
            batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
            return (f"SlateSpace(num_candidates={self.num_candidates}, "
                    f"slate_size={self.slate_size}{batch})")

    @batch_space.register(SlateSpace)
    def _batch_slate(space, n=1):
        from copy import deepcopy

        return SlateSpace(space.num_candidates, space.slate_size, (n,) + space.batch_shape,
                          seed=deepcopy(space.np_random))

    class GymnasiumEnv(gymnasium.Env):
        """A ``gymnasium.Env`` over one user of an mtrlrec environment (see :func:`to_gymnasium`)."""

        metadata = {"render_modes": []}

        def __init__(self, env, params=None, seed=0, reward_weights=None):
            where = "to_gymnasium"
            self._where = f"{where}({env.name})" if isinstance(env, Environment) else where
            prog = _UserProgram(env, params, reward_weights, where)
            self.mtrlrec_env, self.params, self._prog = env, prog.params, prog
            self.observation_space = _gym_space(prog.obs_spec, _classes())
            self.action_space = _gym_space(prog.act_spec, _classes())
            self._seed_key = _seed_key(f"{where}.seed", seed)
            self._seed = int(seed)
            self._build()
            self._carry = None       # flat device buffer: (chain key, state, next obs)
            self._pending = False    # the carry holds an auto-reset user not yet shown

        def _build(self):
            prog = self._prog
            key = jax.ShapeDtypeStruct(self._seed_key.shape, self._seed_key.dtype)
            carry, obs = jax.eval_shape(prog.reset, key)
            carry_tree = (carry, obs)
            self._carry_layout = _Layout(carry_tree, chunk=128)
            self._obs_layout = _Layout(obs)
            action = jax.ShapeDtypeStruct(prog.act_spec.shape, jnp.int32)
            _, _, out = jax.eval_shape(prog.step, carry, action)
            out_tree = {"out": out, "valid": jnp.bool_(True)}
            self._out_layout = _Layout(out_tree, chunk=128)
            # 0-d info entries, reward and flags come back as NumPy scalars; observations
            # stay arrays (0-d ones too), as Gymnasium's Box spaces require.
            plan = jax.tree.map(lambda x: x.ndim == 0, out_tree)
            plan["out"]["final_obs"] = jax.tree.map(lambda _: False, out["final_obs"])
            self._scalars = jax.tree.leaves(plan)
            cl, ol, outl = self._carry_layout, self._obs_layout, self._out_layout

            def reset(key, use_key, cbuf):
                old_key = cl.unpack(cbuf)[0][0]
                carry, obs = prog.reset(jnp.where(use_key, key, old_key))
                return cl.pack((carry, obs)), ol.pack(obs)

            def step(cbuf, action):
                carry, _ = cl.unpack(cbuf)
                ok = prog.valid(action)
                new_carry, obs, out = prog.step(carry, action)
                # no select on ok: the host keeps the old carry after bad actions
                return cl.pack((new_carry, obs)), outl.pack({"out": out, "valid": ok})

            self._reset_fn = jax.jit(reset)
            self._step_fn = jax.jit(step)
            self._empty_carry = cl.pack(jax.tree.map(
                lambda x: jnp.zeros(x.shape, x.dtype), carry_tree))

        def reset(self, *, seed=None, options=None):
            _check_options(options, f"{self._where}.reset", ())
            key = None if seed is None else _seed_key(f"{self._where}.reset: seed", seed)
            if seed is None and self._carry is None:
                key = self._seed_key
                super().reset(seed=self._seed)
            else:
                super().reset(seed=seed)
            if key is None and self._pending:  # fused: the last step already drew the user
                self._pending = False
                obs = self._carry_layout.read(self._carry_layout.host(self._carry))[1]
                return obs, {}
            cbuf = self._empty_carry if self._carry is None else self._carry
            use_key = key is not None
            self._carry, obs_buf = self._reset_fn(key if use_key else self._seed_key, use_key,
                                                  cbuf)
            self._pending = False
            return self._obs_layout.read(np.array(obs_buf)), {}

        def step(self, action):
            if self._carry is None:
                raise gymnasium.error.ResetNeeded(
                    f"{self._where}: call reset() before step().")
            space = self._prog.act_spec
            a = _host_action(action, space, None, f"{self._where}.step", "action")
            new_carry, buf = self._step_fn(self._carry, a)
            res = self._out_layout.read(self._out_layout.host(buf), scalars=self._scalars)
            if not res["valid"]:
                _raise_bad_action(a, space, None, f"{self._where}.step", "action")
            self._carry = new_carry
            out = res["out"]
            terminated, truncated = bool(out["terminated"]), bool(out["truncated"])
            # The compiled step also drew the next user (auto-reset); reset() hands it out.
            self._pending = self._prog.episodic and (terminated or truncated)
            return out["final_obs"], float(out["reward"]), terminated, truncated, out["info"]

        def __repr__(self):
            return f"<GymnasiumEnv({self.mtrlrec_env.name})>"

    class GymnasiumVectorEnv(VectorEnv):
        """A native ``gymnasium.vector.VectorEnv`` (see :func:`to_gymnasium_vector`)."""

        metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

        def __init__(self, env, num_envs, params=None, seed=0, reward_weights=None,
                     array_type="numpy"):
            where = "to_gymnasium_vector"
            self._where = f"{where}({env.name})" if isinstance(env, Environment) else where
            self.num_envs = check_int(f"{where}.num_envs", num_envs, min_value=1)
            if array_type not in _ARRAY_TYPES:
                raise ConfigError(f"{where}.array_type must be one of {list(_ARRAY_TYPES)}, "
                                  f"got {array_type!r}.")
            self.array_type = array_type
            prog = _UserProgram(env, params, reward_weights, where)
            self.mtrlrec_env, self.params, self._prog = env, prog.params, prog
            self.single_observation_space = _gym_space(prog.obs_spec, _classes())
            self.single_action_space = _gym_space(prog.act_spec, _classes())
            self.observation_space = batch_space(self.single_observation_space, self.num_envs)
            self.action_space = batch_space(self.single_action_space, self.num_envs)
            self.metadata = dict(type(self).metadata, jax=array_type == "jax")
            self.render_mode = None
            self._seed = check_int(f"{where}.seed", seed, min_value=0)
            self._build()
            self._carry = None
            self._obs = None
            self._all = np.ones(self.num_envs, np.bool_)
            self._all.flags.writeable = False
            self._all_jax = jnp.ones(self.num_envs, jnp.bool_)
            # rows for final observations per step (NumPy output); grows when exceeded
            self._capacity = self.num_envs if self.num_envs <= 64 else max(64, self.num_envs // 8)

        def _build(self):
            prog, n = self._prog, self.num_envs
            key = jax.ShapeDtypeStruct(jax.random.PRNGKey(0).shape, jnp.uint32)
            carry, _ = jax.eval_shape(prog.reset, key)
            action = jax.ShapeDtypeStruct(prog.act_spec.shape, jnp.int32)
            _, _, out = jax.eval_shape(prog.step, carry, action)
            small = {k: v for k, v in out.items() if k != "final_obs"}
            small["done"] = out["terminated"]
            self._small_layout = _Layout(small)
            sl, episodic = self._small_layout, prog.episodic

            def reset(keys, use_key, mask, carry):
                keys = jnp.where(use_key[:, None], keys, carry[0])
                new_carry, obs = jax.vmap(prog.reset)(keys)
                sel = jax.vmap(_select)(mask, new_carry, carry)
                return sel, obs

            def step(carry, actions, packed, capacity):
                # The carry is not donated: after bad actions (ok False) or a full
                # final-observation buffer the host keeps the old carry and steps again.
                ok = jnp.all(jax.vmap(prog.valid)(actions))
                new_carry, obs, out = jax.vmap(prog.step)(carry, actions)
                final_obs = out.pop("final_obs")
                done = out["done"] = out["terminated"] | out["truncated"]
                if not episodic:
                    final_obs = None
                elif capacity:  # the last observations of the first `capacity` ended users
                    rows = jnp.nonzero(done, size=capacity, fill_value=0)[0]
                    final_obs = jax.tree.map(lambda x: x[rows], final_obs)
                small = jax.vmap(sl.pack, out_axes=1)(out) if packed else out
                return new_carry, obs, final_obs, small, ok

            self._reset_fn = jax.jit(reset, donate_argnums=3)
            self._step_fn = jax.jit(step, static_argnums=(2, 3))
            self._empty_carry = jax.tree.map(
                lambda s: jnp.zeros((n,) + s.shape, s.dtype), carry)

        # -- reset ------------------------------------------------------------------
        def reset(self, *, seed=None, options=None):
            where = f"{self._where}.reset"
            options = _check_options(options, where, ("reset_mask",))
            n = self.num_envs
            mask = options.get("reset_mask")
            if mask is not None:
                mask = np.asarray(mask)
                if mask.shape != (n,) or mask.dtype != np.bool_ or not mask.any():
                    raise ConfigError(
                        f"{where}: options['reset_mask'] must be a bool array of shape ({n},) "
                        f"with at least one True, got {mask.dtype} {mask.shape}.")
                if self._carry is None:
                    raise ConfigError(f"{where}: the first reset() resets every user; "
                                      "reset_mask applies only afterwards.")
            first = self._carry is None
            if seed is None:
                seeds = [None] * n
            elif isinstance(seed, (list, tuple, np.ndarray)):
                seeds = list(seed)
                if len(seeds) != n:
                    raise ConfigError(f"{where}: seed is a list of {len(seeds)} seeds; "
                                      f"expected num_envs = {n} (or one int).")
            else:
                seeds = None
            if seeds is None:  # one int seed for all users
                keys = jax.random.split(_seed_key(f"{where}: seed", seed), n)
                use_key = np.ones(n, np.bool_)
                super().reset(seed=int(seed))
            else:
                use_key = np.array([s is not None for s in seeds]) | first
                keys = np.array(jax.random.split(jax.random.PRNGKey(self._seed), n))
                if first:
                    super().reset(seed=self._seed)
                for i, s in enumerate(seeds):
                    if s is not None:
                        keys[i] = np.asarray(_seed_key(f"{where}: seed[{i}]", s))
            reset_mask = self._all if mask is None else mask
            carry = self._empty_carry if first else self._carry
            self._carry = None  # donated
            self._carry, obs = self._reset_fn(keys, use_key, reset_mask, carry)
            obs = self._convert(obs)
            if mask is not None:
                xp = np if self.array_type == "numpy" else jnp
                obs = jax.tree.map(
                    lambda new, old: xp.where(mask.reshape((n,) + (1,) * (new.ndim - 1)),
                                              new, old), obs, self._obs)
            self._obs = obs
            return obs, {}

        def _convert(self, tree):
            if self.array_type == "jax":
                return tree
            return jax.tree.map(np.asarray, tree)

        # -- step -------------------------------------------------------------------
        def step(self, actions):
            if self._carry is None:
                raise gymnasium.error.ResetNeeded(f"{self._where}: call reset() before step().")
            where, space, n = f"{self._where}.step", self._prog.act_spec, self.num_envs
            a = _host_action(actions, space, n, where, "actions")
            packed = self.array_type == "numpy"
            cap = self._capacity if packed else 0
            carry, obs, final_obs, small, ok = self._step_fn(self._carry, a, packed, cap)
            if not bool(ok):  # the env keeps its state
                _raise_bad_action(a, space, n, where, "actions")
            if packed:
                small = self._small_layout.read(np.asarray(small), batch=n)
                ended = int(small["done"].sum()) if self._prog.episodic else 0
                if ended > cap:  # more episodes ended than the buffer holds: grow, step again
                    self._capacity = cap = min(n, max(2 * cap, ended))
                    carry, obs, final_obs, small, _ = self._step_fn(self._carry, a, True, cap)
                    small = self._small_layout.read(np.asarray(small), batch=n)
                obs = jax.tree.map(np.asarray, obs)
            self._carry, self._obs = carry, obs
            term, trunc, info = small["terminated"], small["truncated"], small["info"]
            infos = {}
            if packed:
                for k, v in info.items():
                    infos[k] = v
                    infos["_" + k] = self._all
            else:
                for k, v in info.items():
                    infos[k] = v
                    infos["_" + k] = self._all_jax
            if self._prog.episodic:
                self._final(infos, final_obs, info, small["done"], packed)
            return obs, small["reward"], term, trunc, infos

        def _final(self, infos, final_obs, info, done, packed):
            """SAME_STEP extras: ``final_obs``/``final_info`` of the users whose episode ended.

            NumPy: as ``SyncVectorEnv`` (an object array of per-user observations, None
            elsewhere), only on steps where some episode ended. jax: the batched
            observation pytree, every step, with the mask ``_final_obs``.
            """
            if packed:
                if not done.any():
                    return
                # final_obs holds the ended users' rows, in user order (a few, not N)
                final_obs = jax.tree.map(np.asarray, final_obs)
                per_user = np.full(self.num_envs, None, dtype=object)
                ended = enumerate(np.flatnonzero(done).tolist())
                if isinstance(final_obs, dict) and all(
                        isinstance(v, np.ndarray) for v in final_obs.values()):
                    for j, i in ended:
                        per_user[i] = {k: v[j] for k, v in final_obs.items()}
                else:
                    for j, i in ended:
                        per_user[i] = jax.tree.map(lambda x: x[j], final_obs)
                final_obs = per_user
            final_info = {}
            for k, v in info.items():
                final_info[k] = v
                final_info["_" + k] = done
            infos["final_obs"], infos["_final_obs"] = final_obs, done
            infos["final_info"], infos["_final_info"] = final_info, done

        def __repr__(self):
            return (f"<GymnasiumVectorEnv({self.mtrlrec_env.name}, num_envs={self.num_envs}, "
                    f"array_type={self.array_type!r})>")

    for cls in (SlateSpace, GymnasiumEnv, GymnasiumVectorEnv):
        cls.__module__ = __name__  # picklable through the module __getattr__ below
        cls.__qualname__ = cls.__name__
    return type("_GymClasses", (), {"SlateSpace": SlateSpace, "GymnasiumEnv": GymnasiumEnv,
                                    "GymnasiumVectorEnv": GymnasiumVectorEnv})


def __getattr__(name: str):
    if name in ("SlateSpace", "GymnasiumEnv", "GymnasiumVectorEnv"):
        return getattr(_classes(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def to_gymnasium(env: Environment, params: Any = None, seed: int = 0, *,
                 reward_weights: Sequence[float] | None = None):
    """One user of ``env`` as a ``gymnasium.Env`` (NumPy in, NumPy out).

    Args:
      env: any mtrlrec environment with a ``Discrete`` or ``Slate`` action space.
      params: environment parameters (default ``env.default_params()``; checked
        with ``env.check_params``).
      seed: seed of the first ``reset()`` when it is called without one.
      reward_weights: scalarisation ``w`` of a vector reward (required then):
        ``reward = w · r``, components in ``info['reward/<name>']``.

    Each ``step`` is one compiled call that also draws the next user (the
    environment's auto-reset); after ``terminated`` or ``truncated``, ``reset()``
    without a seed returns that user's first observation without another device
    call. Stepping past the end of an episode without ``reset()`` continues with
    the new user. Every call returns new NumPy arrays.

    Requires the ``gymnasium`` package (``pip install 'mtrlrec[test]'``).
    """
    return _classes().GymnasiumEnv(env, params, seed, reward_weights)


def to_gymnasium_vector(env: Environment, num_envs: int, params: Any = None, seed: int = 0, *,
                        reward_weights: Sequence[float] | None = None,
                        array_type: str = "numpy"):
    """``num_envs`` users of ``env`` as one native ``gymnasium.vector.VectorEnv``.

    Every ``step(actions)`` is one ``jit(vmap(step))`` call over all users.
    Autoreset mode: ``gymnasium.vector.AutoresetMode.SAME_STEP`` (in
    ``metadata['autoreset_mode']``): a user whose episode ends is replaced within
    the same step, the returned observation is the new user's first one, and
    ``info['final_obs']`` / ``info['final_info']`` (masks ``_final_obs`` /
    ``_final_info``) hold the ended episodes' last observation and info. This is
    the environment's built-in auto-reset, so no step is spent on resets (with
    ``NEXT_STEP`` every episode would cost one extra step whose action is
    ignored), and it is what CleanRL-style loops and Stable-Baselines3's
    ``VecEnv`` (``terminal_observation``) expect.

    Args:
      env: any mtrlrec environment with a ``Discrete`` or ``Slate`` action space.
      num_envs: users stepped together (>= 1).
      params: environment parameters, shared by all users (default
        ``env.default_params()``).
      seed: seed of the first ``reset()`` when it is called without one.
      reward_weights: scalarisation of a vector reward, as in :func:`to_gymnasium`.
      array_type: ``'numpy'`` (default): observations, rewards ``float32 [N]``,
        terminations/truncations ``bool [N]`` and infos (``info[k]`` ``[N, ...]``
        with mask ``info['_' + k]``) are NumPy arrays, read-only views of the
        device buffers (zero-copy on CPU; copy before modifying them in place). ``'jax'``: the same as ``jax.Array``
        on the device (no host copy; ``torch.from_dlpack`` takes them without a
        copy, and Gymnasium's ``JaxToNumpy``/``JaxToTorch`` vector wrappers apply);
        ``final_obs`` is then the batched observation pytree at every step.

    ``reset(seed=s)`` reseeds every user from ``s``; ``seed=[s_0, ..., s_{N-1}]``
    seeds each user (``None`` entries keep their key chain); ``options=
    {'reset_mask': mask}`` resets only the users where ``mask`` is True.

    Requires the ``gymnasium`` package (>= 1.1, for ``AutoresetMode``).
    """
    return _classes().GymnasiumVectorEnv(env, num_envs, params, seed, reward_weights, array_type)


__all__ = ["AUTORESET_MODE", "to_gymnasium", "to_gymnasium_vector"]
