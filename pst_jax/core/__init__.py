"""PST's math, with no Hugging Face and no I/O: one matrix (:mod:`~pst_jax.core.pst`, :mod:`~pst_jax.core.topk`),
the parameter paths it applies to (:mod:`~pst_jax.core.rules`), the whole tree (:mod:`~pst_jax.core.model`),
the sparsity schedule (:mod:`~pst_jax.core.schedule`), its settings (:mod:`~pst_jax.core.config`) and type
aliases (:mod:`~pst_jax.core.types`)."""
