"""The training stack every method and task shares: jitted train/eval steps
(:mod:`~pst_jax.training.step`), losses, optimizer, mesh sharding, the epoch loop, the run skeleton
every experiment builds on (:mod:`~pst_jax.training.run`), the shared method settings
(:mod:`~pst_jax.training.method_config`), bad-input errors (:mod:`~pst_jax.training.errors`), and profiling."""
