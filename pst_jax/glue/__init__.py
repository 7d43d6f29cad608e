"""The GLUE experiment: tasks and metrics (:mod:`~pst_jax.glue.tasks`), loaders, the run
(:mod:`~pst_jax.glue.run`) and the comparison sweep (:mod:`~pst_jax.glue.sweep`)."""
