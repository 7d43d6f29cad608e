"""The GLUE experiment: tasks and metrics (:mod:`~pst_jax.glue.tasks`), loaders (:mod:`~pst_jax.glue.loaders`),
settings (:mod:`~pst_jax.glue.config`), model and data sources (:mod:`~pst_jax.glue.sources`), the run
(:mod:`~pst_jax.glue.run`), the export check (:mod:`~pst_jax.glue.check`) and the comparison sweep
(:mod:`~pst_jax.glue.sweep`)."""
