"""Import of published checkpoints into noembed params."""
