"""Type aliases shared across the package."""

from collections.abc import Callable, Mapping
from typing import Any

import jax

Array = jax.Array
#: A nested Flax parameter tree, e.g. ``{"bert": {"encoder": {...}}}``.
Params = Mapping[str, Any]
#: A flat view of a parameter tree: ``{"bert/encoder/.../kernel": array}``.
FlatParams = dict[str, Array]
#: The six PST factors of one matrix: ``{"U", "V", "A", "B", "R", "C"}``.
MatrixFactors = Mapping[str, Array]
#: PST factors of a whole model, keyed by matrix name (see :class:`pst_jax.core.rules.Matrix`).
Factors = dict[str, dict[str, Array]]
#: 0/1 masks keyed by matrix name, each shaped ``(d_in, d_out)``.
Masks = dict[str, Array]
#: A batch of model inputs and targets.
Batch = Mapping[str, Array]
#: A task loss, ``loss_fn(params, batch, dropout_rng) -> (loss, aux)``; ``dropout_rng=None`` evaluates.
LossFn = Callable[[Params, Batch, Array | None], tuple[Array, dict[str, Array]]]
