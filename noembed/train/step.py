"""The jitted train and eval steps: one donated step per batch, returning a metrics dict."""

import jax
import jax.numpy as jnp
import optax


def make_apply_fn(model):
  """apply_fn(variables, batch, train, rngs, method): logits, or (logits, new model state) in
  training; `method` (default __call__) is passed to model.apply, e.g. greedy decoding."""

  def apply_fn(variables, batch, *, train: bool, rngs, method=None):
    if train:
      logits, updates = model.apply(variables, batch, deterministic=False, rngs=rngs,
                                    mutable=["batch_stats"], method=method)
      return logits, updates
    return model.apply(variables, batch, deterministic=True, method=method)

  return apply_fn


def _split_microbatches(batch, num_microbatches):
  return jax.tree_util.tree_map(
      lambda x: x.reshape((num_microbatches, x.shape[0] // num_microbatches) + x.shape[1:]),
      batch)


def make_train_step(model, task, tx, learning_rate_fn, base_rng, grad_accum_steps: int = 1):
  """(state, batch) -> (state, metrics); metrics hold (numerator, denominator) pairs."""
  apply_fn = make_apply_fn(model)

  def loss_and_grads(params, model_state, batch, rng):
    def loss_fn(params):
      loss, metrics, new_state = task.loss(apply_fn, {"params": params, **model_state}, batch,
                                           rng, train=True)
      return loss, (metrics, new_state)
    (loss, (metrics, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, metrics, new_state, grads

  def train_step(state, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    if grad_accum_steps == 1:
      loss, metrics, new_state, grads = loss_and_grads(state.params, state.model_state, batch,
                                                       rng)
    else:
      micro = _split_microbatches(batch, grad_accum_steps)

      def accumulate(carry, index_and_batch):
        index, microbatch = index_and_batch
        grads_sum, loss_sum, model_state, metrics_sum = carry
        loss, metrics, new_state, grads = loss_and_grads(
            state.params, model_state, microbatch, jax.random.fold_in(rng, index))
        grads_sum = jax.tree_util.tree_map(jnp.add, grads_sum, grads)
        metrics_sum = jax.tree_util.tree_map(jnp.add, metrics_sum, metrics)
        return (grads_sum, loss_sum + loss, {**model_state, **new_state}, metrics_sum), None

      first = jax.tree_util.tree_map(lambda x: x[0], micro)
      metrics_shape = jax.eval_shape(
          lambda: loss_and_grads(state.params, state.model_state, first, rng)[1])
      zeros = lambda tree: jax.tree_util.tree_map(
          lambda x: jnp.zeros(x.shape, x.dtype), tree)
      carry = (zeros(state.params), jnp.zeros((), jnp.float32), state.model_state,
               zeros(metrics_shape))
      (grads, loss, new_state, metrics), _ = jax.lax.scan(
          accumulate, carry, (jnp.arange(grad_accum_steps), micro))
      grads = jax.tree_util.tree_map(lambda g: g / grad_accum_steps, grads)
      loss = loss / grad_accum_steps
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics)
    metrics["train_loss"] = (loss, jnp.ones((), jnp.float32))
    metrics["grad_norm"] = (optax.tree.norm(grads), jnp.ones((), jnp.float32))
    if "num_bytes" in batch:
      metrics["batch_bytes"] = (jnp.sum(batch["num_bytes"]).astype(jnp.float32),
                                jnp.ones((), jnp.float32))
    metrics["learning_rate"] = (jnp.asarray(learning_rate_fn(state.step), jnp.float32),
                                jnp.ones((), jnp.float32))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state={**state.model_state, **(new_state or {})})
    return new_state, metrics

  return train_step


def make_eval_step(model, task, base_rng):
  apply_fn = make_apply_fn(model)

  def eval_step(state, batch, index):
    rng = jax.random.fold_in(base_rng, index)
    return task.eval_metrics(apply_fn, {"params": state.params, **state.model_state}, batch,
                             rng)

  return eval_step


def jit_train_step(train_step, state_shardings, batch_sharding):
  return jax.jit(train_step, in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, None), donate_argnums=(0,))


def jit_eval_step(eval_step, state_shardings, batch_sharding):
  return jax.jit(eval_step, in_shardings=(state_shardings, batch_sharding, None))
