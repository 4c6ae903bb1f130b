"""The Embedder interface shared by every input method (see DESIGN.md, "Interfaces")."""

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class Embedded:
  """What an embedder hands to a model.

  x: [batch, length, d_model] embedded positions; `length` may be shorter than the input
    (downsampling).
  mask: [batch, length] bool, True where a position is real.
  aux: whatever the embedder needs later (e.g. character states for upsampling) or reports
    (e.g. GBST block scores). Models never depend on its keys except through the embedder.
  """

  x: jax.Array
  mask: jax.Array
  aux: dict[str, Any] = flax.struct.field(default_factory=dict)
