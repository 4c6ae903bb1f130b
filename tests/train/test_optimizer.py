"""Schedules and the weight-decay mask of noembed.train.optimizer."""

import jax.numpy as jnp
import numpy as np
import pytest

from noembed.train import optimizer


def _config(**overrides):
  config = optimizer.default_config()
  config.update({"learning_rate": 1.0, "warmup_steps": 10, "end_learning_rate_ratio": 0.1,
                 **overrides})
  return config


def test_warmup_then_cosine():
  lr = optimizer.schedule(_config(schedule="cosine"), num_train_steps=110)
  assert float(lr(0)) == 0.0
  assert float(lr(5)) == pytest.approx(0.5)
  assert float(lr(10)) == pytest.approx(1.0)
  assert float(lr(60)) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-6)
  assert float(lr(110)) == pytest.approx(0.1, abs=1e-6)


def test_rsqrt_and_linear():
  rsqrt = optimizer.schedule(_config(schedule="rsqrt"), num_train_steps=1000)
  assert float(rsqrt(10)) == pytest.approx(1.0)
  assert float(rsqrt(10 + 30)) == pytest.approx(np.sqrt(10 / 40))
  linear = optimizer.schedule(_config(schedule="linear"), num_train_steps=110)
  assert float(linear(60)) == pytest.approx(0.55, abs=1e-6)


def test_weight_decay_mask_skips_biases_norms_and_vectors():
  params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))},
            "layer_norm": {"scale": jnp.ones((3,))}, "embedding": jnp.ones((4, 3))}
  mask = optimizer.decay_mask(params, r"(bias|scale|norm)")
  assert mask == {"dense": {"kernel": True, "bias": False}, "layer_norm": {"scale": False},
                  "embedding": True}


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_optimizers_decrease_a_quadratic(name):
  config = _config(name=name, schedule="constant", warmup_steps=0, learning_rate=0.1)
  tx, _ = optimizer.make(config, num_train_steps=100)
  params = {"w": jnp.full((4, 4), 3.0)}
  state = tx.init(params)
  loss = lambda p: jnp.sum(p["w"] ** 2)
  import jax  # pylint: disable=g-import-not-at-top
  start = float(loss(params))
  for _ in range(20):
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
  assert float(loss(params)) < 0.5 * start


def test_unknown_schedule_is_named():
  with pytest.raises(ValueError, match="'cosinus'"):
    optimizer.schedule(_config(schedule="cosinus"), num_train_steps=10)
