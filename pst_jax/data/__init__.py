"""Data handling both tasks share: length-bucketed batches (:mod:`~pst_jax.data.batching`), and where the model
and data come from: hub, cache, offline, or a local folder (:mod:`~pst_jax.data.hub`)."""
