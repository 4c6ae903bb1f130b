"""The train state and its sharded creation (born sharded: eval_shape -> shardings -> jit)."""

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from noembed.train import mesh as mesh_lib


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data position; rng comes from fold_in(step)."""

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any      # non-param collections, e.g. batch norm statistics


def unbox_shapes(tree):
  """Strips LogicallyPartitioned boxes from an eval_shape tree (no sharding constraint)."""
  is_box = lambda x: isinstance(x, nn.Partitioned)
  return jax.tree_util.tree_map(lambda x: x.unbox(apply_constraint=False) if is_box(x) else x,
                                tree, is_leaf=is_box)


def init_variables(model, sample_batch, rng):
  """Boxed (logically partitioned) variables of `model` for a batch of this shape."""
  params_rng, dropout_rng = jax.random.split(rng)
  return model.init({"params": params_rng, "dropout": dropout_rng}, sample_batch,
                    deterministic=True)


def make_init_fn(model, tx: optax.GradientTransformation, sample_batch):
  """rng -> boxed TrainState; jax.eval_shape of it gives the logical partition specs."""

  def init(rng):
    variables = dict(init_variables(model, sample_batch, rng))
    params = variables.pop("params")
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      model_state=variables)

  return init


def plan(model, tx, sample_batch, mesh, axis_rules):
  """(init, shardings, abstract_state) without creating any array.

  init: rng -> the state, created directly with its shardings (jitted). abstract_state is the
  unboxed ShapeDtypeStruct tree carrying the shardings, the target a checkpoint restore needs
  on this mesh; a resumed run restores into it and never calls init.
  """
  init = make_init_fn(model, tx, sample_batch)
  boxed = jax.eval_shape(init, jax.random.PRNGKey(0))
  shardings = mesh_lib.state_shardings(boxed, mesh, axis_rules)
  unboxed_shapes = unbox_shapes(boxed)
  mesh_lib.check_divisible(unboxed_shapes, shardings)
  abstract = jax.tree_util.tree_map(
      lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
      unboxed_shapes, shardings)
  return jax.jit(lambda key: nn.unbox(init(key)), out_shardings=shardings), shardings, abstract


def create(model, tx, sample_batch, rng, mesh, axis_rules):
  """(state, shardings, abstract_state): `plan`, then the state initialised from rng."""
  init, shardings, abstract = plan(model, tx, sample_batch, mesh, axis_rules)
  return init(rng), shardings, abstract


def abstract_state(model, tx, sample_batch, rng):
  """Shapes only (no arrays): used by --dry_run's parameter table."""
  return unbox_shapes(jax.eval_shape(make_init_fn(model, tx, sample_batch), rng))
