"""Entry point: flags -> noembed.train.run(config, workdir).

  python launch.py --config configs/quickstart.py --workdir workdirs/quickstart
  python launch.py --config configs/quickstart.py:size=tiny --config.model.num_layers=4 --dry_run

Bad flags or configs exit with status 2 before anything compiles. Multi-host: pass
--coordinator_address/--num_processes/--process_id (or NOEMBED_COORDINATOR_ADDRESS,
NOEMBED_NUM_PROCESSES, NOEMBED_PROCESS_ID), or --multihost to let jax.distributed.initialize()
detect the cluster (TPU pods, SLURM).
"""

import os
import sys

from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:argument].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and TensorBoard logs go here.")
flags.DEFINE_bool("dry_run", False, "Build the model (shapes only), print its parameter table, "
                  "exit without training.")
flags.DEFINE_string("coordinator_address", os.environ.get("NOEMBED_COORDINATOR_ADDRESS"),
                    "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", int(os.environ.get("NOEMBED_NUM_PROCESSES", "1")),
                     "Number of processes of a multi-process run.")
flags.DEFINE_integer("process_id", int(os.environ.get("NOEMBED_PROCESS_ID", "0")),
                     "This process's index in a multi-process run.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() with cluster "
                  "auto-detection.")

USAGE_ERROR = 2
RUN_FAILED = 1


def _fail(message: str) -> None:
  print(f"launch.py: error: {message}", file=sys.stderr)
  sys.exit(USAGE_ERROR)


def _initialize_distributed() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.coordinator_address and FLAGS.num_processes > 1:
    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  elif FLAGS.multihost:
    jax.distributed.initialize()


def main(argv: list[str]) -> int:
  try:
    FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
    # config_flags reports an override of a key that does not exist as AttributeError.
    message = str(error.args[0] if error.args else error)
    if isinstance(error, AttributeError):  # its text is the repr of a KeyError's text
      message = "unknown config key " + message.strip("'").replace("\\'", "'").replace(
          "\\n", " ")
    _fail(message)
  if FLAGS.config is None:
    _fail("--config is required, e.g. --config configs/quickstart.py")
  from noembed.train import config_check  # pylint: disable=g-import-not-at-top
  try:
    config_check.validate(FLAGS.config)
  except config_check.ConfigError as error:
    _fail(str(error))
  if FLAGS.dry_run:
    from noembed.train import dry_run  # pylint: disable=g-import-not-at-top
    try:
      print(dry_run.parameter_table(FLAGS.config))
    except config_check.ConfigError as error:
      _fail(str(error))
    return 0
  if not FLAGS.workdir:
    _fail("--workdir is required to train")
  _initialize_distributed()
  from noembed import train  # pylint: disable=g-import-not-at-top
  from noembed.train import checkpoint, loop  # pylint: disable=g-import-not-at-top
  try:
    result = train.run(FLAGS.config, FLAGS.workdir)
  except config_check.ConfigError as error:
    _fail(str(error))
  except (loop.NonFiniteLoss, checkpoint.NoRestorableCheckpoint,
          checkpoint.ProcessCountMismatch) as error:
    print(f"launch.py: run stopped: {error}", file=sys.stderr)
    return RUN_FAILED
  workdir = os.path.abspath(FLAGS.workdir)
  print(f"finished at step {result.step} ({result.stopped_by})")
  print(f"checkpoints: {os.path.join(workdir, 'checkpoints')}")
  print(f"metrics:     {os.path.join(workdir, 'metrics.jsonl')}")
  print(f"tensorboard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}")
  if result.stopped_by != "done":
    return 128 + {"SIGTERM": 15, "SIGINT": 2}[result.stopped_by]
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
