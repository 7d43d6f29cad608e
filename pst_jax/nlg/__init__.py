"""The data-to-text experiment (E2E, DART, WebNLG on GPT-2): loaders (:mod:`~pst_jax.nlg.data`), causal-LM
rows and prompts (:mod:`~pst_jax.nlg.rows`), beam search (:mod:`~pst_jax.nlg.beam_search`), metrics
(:mod:`~pst_jax.nlg.metrics`) settings (:mod:`~pst_jax.nlg.config`) and the run (:mod:`~pst_jax.nlg.run`)."""
