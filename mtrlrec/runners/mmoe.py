r"""``MMoESyntheticRunner``: the MMoE synthetic study (``Experiment.runner = @MMoESyntheticRunner()``).

Ma et al. (KDD 2018) §3.2/§5 synthetic study: many independent runs of one
multi-task model at one task correlation, all in one compiled ``vmap`` (with
the learning-rate grid as a second vmapped axis). The networks are in
:mod:`mtrlrec.models.multitask`, the data generator in
:mod:`mtrlrec.models.synthetic`; the other supervised runner,
:class:`~mtrlrec.runners.next_item.NextItemRunner`, is in
:mod:`mtrlrec.runners.next_item`.
"""

from __future__ import annotations

import functools
from typing import Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.models import multitask, synthetic
from mtrlrec.train import supervised
from mtrlrec.train.result import Result, RunContext


def _mmoe_programs(kind: str, dim: int, batch: int, weights: tuple = (1.0, 1.0),
                   balancing: str = "fixed", gradnorm: tuple = (1.5, 0.025)):
    """Model functions shared by every runner with the same static configuration.

    The model is built here, under the current Gin bindings, and is part of
    the cache key (linen modules hash by their fields), so a later run in the
    same process with other ``MultiTaskModel`` bindings gets its own programs.
    """
    model = multitask.make_multitask_model(kind=kind, num_tasks=2)
    return _mmoe_programs_for(model, dim, batch, tuple(weights), balancing, tuple(gradnorm))


@functools.lru_cache(maxsize=None)
def _mmoe_programs_for(model, dim: int, batch: int, weights: tuple, balancing: str,
                       gradnorm: tuple = (1.5, 0.025)):
    """Cached model functions of one concrete model.

    Training loss: ``Σ_t w_t MSE_t`` (``fixed``), uncertainty weighting with
    learned ``log σ_t²`` stored beside the network parameters (``uncertainty``),
    or ``Σ_t w_t MSE_t`` with GradNorm weights ``w_t`` kept beside the network
    and moved after every step by ``post_step`` (``gradnorm``; ``w_t`` start at
    the fixed weights' values, 1 by default).
    """
    w = jnp.asarray(weights, jnp.float32)
    alpha, gn_lr = gradnorm
    kinds = ("mse", "mse")

    def init_fn(key):
        net = model.init(key, jnp.zeros((1, dim)))
        if balancing == "uncertainty":
            return {"net": net, "log_vars": jnp.zeros(2)}
        if balancing == "gradnorm":
            state = multitask.gradnorm_init(2)
            state["weights"] = w * (2.0 / jnp.sum(w))  # GradNorm keeps Σ w_t = T
            return {"net": net, "gradnorm": state}
        return net

    def apply_net(net, x):
        return model.apply(net, x)[..., 0]  # [B, 2]

    def predict(params, x):
        return apply_net(params["net"] if balancing != "fixed" else params, x)

    def loss_fn(params, batch_, key):
        x, y = batch_
        losses = multitask.task_losses(predict(params, x), y, kinds)
        if balancing == "gradnorm":
            net = params["net"]
            name = multitask.shared_layer(net)

            def per_task(shared):
                inner = dict(net["params"], **{name: shared})
                return multitask.task_losses(apply_net(dict(net, params=inner), x), y, kinds)

            norms = multitask.gradnorm_grad_norms(per_task, net["params"][name])
            gw = jax.lax.stop_gradient(params["gradnorm"]["weights"])
            return jnp.sum(gw * losses), {"losses": losses, "grad_norms": norms}
        log_vars = params["log_vars"] if balancing == "uncertainty" else None
        return multitask.multitask_loss(losses, w, balancing, log_vars), {}

    def post_step(params, aux):
        state = multitask.gradnorm_step(params["gradnorm"], aux["losses"], aux["grad_norms"], alpha, gn_lr)
        return dict(params, gradnorm=state)

    def eval_fn(params, data):
        x, y = data
        losses = multitask.task_losses(predict(params, x), y, kinds)
        return {"loss": losses.mean(), "loss_task1": losses[0], "loss_task2": losses[1]}

    return model, init_fn, predict, loss_fn, eval_fn, (post_step if balancing == "gradnorm" else None)


def _sample_batch(key, tdata, batch_size):
    """Streams one fresh minibatch from the run's generator (``tdata = {'w', 'tp'}``)."""
    return synthetic.sample_data(key, tdata["w"], batch_size, tdata["tp"])


@gin.configurable
class MMoESyntheticRunner:
    r"""Trains a multi-task model on the MMoE synthetic data (Ma et al. 2018, §3.2, §5).

    Every seed is an independent run: its own task weights ``w_1, w_2`` (drawn
    with correlation ``p``), its own data and its own initialisation; all runs
    (× the learning-rate grid) are one ``vmap``. The learning rate is chosen
    from ``learning_rates`` by the mean validation loss over runs; the final
    metric is the test loss ``(MSE_1 + MSE_2)/2`` of each run at that rate.

    Training data are streamed (a fresh batch from the generator each step,
    ``num_train=0``) or a fixed set of ``num_train`` samples per run.

    Args:
      model: 'shared_bottom', 'omoe', 'mmoe' or 'ple' (see :func:`make_multitask_model`).
      correlation: task correlation p in [-1, 1].
      learning_rates: Adam step sizes tried (one compiled call).
      dim: input dimension d (100 in the paper).
      num_train: training samples per run (0: stream fresh samples).
      num_valid, num_test: validation/test samples per run.
      batch_size, num_epochs, steps_per_epoch: training length.
      num_sines, c, noise_var, alphas, betas: generator constants (see
        :mod:`mtrlrec.models.synthetic`).
      quick_epochs: epochs used by ``bench --quick``.
      task_weights: the two tasks' loss weights (fixed balancing; GradNorm's
        starting weights, rescaled to sum to 2).
      balancing: 'fixed', 'uncertainty' (Kendall et al. 2018, learned log σ_t²) or
        'gradnorm' (Chen et al. 2018: task weights in the training state, one
        GradNorm step after every Adam step; the last shared layer is ``W``).
      gradnorm_alpha: GradNorm's α (asymmetry; 1.5 in the paper's NYUv2 runs).
      gradnorm_lr: step size of the GradNorm update of the weights.
    """

    def __init__(
        self,
        model: str = "mmoe",
        correlation: float = 0.5,
        learning_rates: Sequence[float] = (1e-4, 1e-3, 1e-2),
        dim: int = 100,
        num_train: int = 0,
        num_valid: int = 1000,
        num_test: int = 1000,
        batch_size: int = 128,
        num_epochs: int = 10,
        steps_per_epoch: int = 100,
        num_sines: int = 10,
        c: float = 1.0,
        noise_var: float = 0.01,
        alphas: Sequence[float] | None = None,
        betas: Sequence[float] | None = None,
        quick_epochs: int | None = None,
        task_weights: Sequence[float] = (1.0, 1.0),
        balancing: str = "fixed",
        gradnorm_alpha: float = 1.5,
        gradnorm_lr: float = 0.025,
    ):
        w = "MMoESyntheticRunner"
        if model not in ("shared_bottom", "omoe", "mmoe", "ple"):
            raise ConfigError(f"{w}.model must be 'shared_bottom', 'omoe', 'mmoe' or 'ple', got {model!r}.")
        self.model = model
        self.correlation = synthetic.check_correlation(f"{w}.correlation", correlation)
        if isinstance(learning_rates, (int, float)):
            learning_rates = (learning_rates,)
        if len(learning_rates) == 0:
            raise ConfigError(f"{w}.learning_rates is empty.")
        self.learning_rates = tuple(
            check_float(f"{w}.learning_rates[{i}]", v, low=0.0, low_open=True) for i, v in enumerate(learning_rates)
        )
        self.dim = check_int(f"{w}.dim", dim, min_value=2)
        self.num_train = check_int(f"{w}.num_train", num_train, min_value=0)
        self.num_valid = check_int(f"{w}.num_valid", num_valid, min_value=1)
        self.num_test = check_int(f"{w}.num_test", num_test, min_value=1)
        self.batch_size = check_int(f"{w}.batch_size", batch_size, min_value=1)
        if self.num_train and self.num_train < self.batch_size:
            raise ConfigError(f"{w}.num_train={num_train} is smaller than {w}.batch_size={batch_size}.")
        self.num_epochs = check_int(f"{w}.num_epochs", num_epochs, min_value=1)
        self.steps_per_epoch = check_int(f"{w}.steps_per_epoch", steps_per_epoch, min_value=1)
        self.quick_epochs = None if quick_epochs is None else check_int(f"{w}.quick_epochs", quick_epochs, min_value=1)
        self.task_params = synthetic.default_task_params(num_sines, c, noise_var, alphas, betas, where=w)
        self.task_weights = multitask.check_task_weights(f"{w}.task_weights", task_weights, 2)
        if balancing not in ("fixed", "uncertainty", "gradnorm"):
            raise ConfigError(f"{w}.balancing must be 'fixed', 'uncertainty' or 'gradnorm', got {balancing!r}.")
        self.balancing = balancing
        if balancing == "gradnorm" and min(self.task_weights) <= 0:
            raise ConfigError(f"{w}.task_weights must be > 0 with balancing='gradnorm' (they are the "
                              f"starting GradNorm weights), got {list(self.task_weights)}.")
        self.gradnorm_alpha = check_float(f"{w}.gradnorm_alpha", gradnorm_alpha, low=0.0)
        self.gradnorm_lr = check_float(f"{w}.gradnorm_lr", gradnorm_lr, low=0.0, low_open=True)

    def __call__(self, ctx: RunContext) -> Result:
        S = ctx.num_seeds
        tp = self.task_params
        model, init_fn, predict, loss_fn, eval_fn, post_step = _mmoe_programs(
            self.model, self.dim, self.batch_size, self.task_weights, self.balancing,
            (self.gradnorm_alpha, self.gradnorm_lr),
        )
        keys = jax.random.split(jax.random.PRNGKey(ctx.seed + 7_919), S)
        p = jnp.float32(self.correlation)

        @jax.jit
        def make_data(keys):
            def one(key):
                kw, kt, kv, ks = jax.random.split(key, 4)
                w = synthetic.sample_weights(kw, p, self.dim, tp.c)
                out = {"w": w, "valid": synthetic.sample_data(kv, w, self.num_valid, tp),
                       "test": synthetic.sample_data(ks, w, self.num_test, tp)}
                if self.num_train:
                    out["train"] = synthetic.sample_data(kt, w, self.num_train, tp)
                return out

            return jax.vmap(one)(keys)

        data = make_data(keys)

        epochs = self.quick_epochs if (ctx.quick and self.quick_epochs) else self.num_epochs
        common = dict(
            valid_data=data["valid"], data_per_seed=True, num_seeds=S, seed=ctx.seed, batch_size=self.batch_size,
            num_epochs=epochs, hparams={"learning_rate": self.learning_rates}, writer=ctx.writer,
            checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume, progress=ctx.progress, post_step=post_step,
        )
        if self.num_train:
            out = supervised.fit(init_fn, loss_fn, eval_fn, train_data=data["train"], **common)
        else:
            tdata = {"w": data["w"], "tp": jax.tree.map(lambda a: jnp.broadcast_to(a, (S,) + a.shape), tp)}
            out = supervised.fit(init_fn, loss_fn, eval_fn, train_data=tdata, sample_fn=_sample_batch,
                                 steps_per_epoch=self.steps_per_epoch, **common)
        h = int(np.argmin(np.mean(out.best, axis=-1)))  # best learning rate on validation
        best_params = jax.tree.map(lambda a: a[h], out.params)
        test = jax.jit(jax.vmap(eval_fn))(best_params, data["test"])
        test = {k: np.asarray(v) for k, v in test.items()}
        loss = test["loss"]
        steps_per_epoch = self.steps_per_epoch if not self.num_train else self.num_train // self.batch_size
        one = jax.tree.map(lambda a: a[0, 0], out.params)
        nparams = multitask.count_params(one["net"] if self.balancing != "fixed" else one)
        final = {
            "test_loss": loss,
            "test_loss_task1": test["loss_task1"],
            "test_loss_task2": test["loss_task2"],
            # One value per cell (the spread over runs); n = 1, so no SE.
            "test_loss_sd": np.asarray([np.std(loss, ddof=1) if S > 1 else 0.0]),
            "learning_rate": np.asarray([self.learning_rates[h]]),
            "num_params": np.asarray([float(nparams)]),
        }
        if self.balancing == "gradnorm":  # the weights of the returned (best-epoch) parameters
            gw = np.asarray(best_params["gradnorm"]["weights"])  # [S, 2]
            final["gradnorm_weight_task1"], final["gradnorm_weight_task2"] = gw[:, 0], gw[:, 1]
        lr_rows = "\n".join(
            f"| {lr:g} | {np.mean(out.best[i]):.4f} |" for i, lr in enumerate(self.learning_rates)
        )
        table = (
            f"model `{self.model}`, p = {self.correlation}, {S} runs, {nparams} parameters\n\n"
            "| learning rate | mean best validation loss |\n|---|---|\n" + lr_rows
        )
        return Result(
            final=final,
            curves={k: v[h] for k, v in out.curves.items()},
            steps=out.epochs * steps_per_epoch,
            primary="valid/loss",
            tables={"learning-rate selection": table},
        )
