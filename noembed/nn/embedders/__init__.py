"""Input layers that replace a vocabulary embedding table, one file per input method.

Every module here has `__call__(inputs: dict[str, Array], *, deterministic: bool) -> Embedded`.
Methods that downsample also have `upsample(hidden_BxMxD, embedded, *, deterministic)` returning
[batch, input_length, d_model]. They are paired with their front ends in `noembed.inputs`.
"""

from noembed.nn.embedders.base import Embedded

__all__ = ["Embedded"]
