"""noembed: NLP without a vocabulary embedding table, in JAX/Flax."""
