"""Objectives: each task supplies its batch builder, model head, loss and metrics.

A task is a class constructed from the whole config, with:
  head -> noembed.models.HeadSpec           what the model must output
  data -> TaskData                          which split fields and packing it reads
  batch_fn(examples) -> dict of np arrays   host side, called once per batch by the pipeline
  loss(apply_fn, variables, batch, rng, train) -> (loss, metrics, new_model_state)
  eval_metrics(apply_fn, variables, batch, rng) -> metrics
`metrics` maps a name to a (numerator, denominator) pair of scalars, so sums over batches,
devices and hosts aggregate exactly; the value reported is numerator / denominator.
The loop, checkpointing and sharding are the same for every task.
"""

import ml_collections

from noembed.tasks import classification, mlm, seq2seq, span_corruption

_TASKS = {
    "mlm": mlm.MaskedUnitPrediction,
    "classification": classification.Classification,
    "seq2seq": seq2seq.Seq2Seq,
    "span_corruption": span_corruption.SpanCorruption,
}


def default_section(name: str) -> ml_collections.ConfigDict:
  if name not in _TASKS:
    raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(_TASKS))}")
  return _TASKS[name].default_config()


def build(config: ml_collections.ConfigDict):
  return _TASKS[config.task.name](config)
