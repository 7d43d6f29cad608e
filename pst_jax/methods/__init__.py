"""Fine-tuning methods: :mod:`~pst_jax.methods.base` (the :class:`Method` interface, ``pst`` and ``dense``, and
``export_model``), :mod:`~pst_jax.methods.pruning` and :mod:`~pst_jax.methods.lora` (the baselines), every method by
name in :mod:`~pst_jax.methods.registry`, and exact parameter counts in :mod:`~pst_jax.methods.count`.

``pst_jax.methods.pst(plan)`` and ``pst_jax.methods.dense()`` build the two methods of
:mod:`~pst_jax.methods.base`.
"""

from pst_jax.methods.base import Method, Trainable, dense, export_model, pst, split_head

__all__ = ["Method", "Trainable", "dense", "export_model", "pst", "split_head"]
