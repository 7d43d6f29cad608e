"""Data handling both tasks share: length-bucketed batches (:mod:`~pst_jax.data.batching`)."""
