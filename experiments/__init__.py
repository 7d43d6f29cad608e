"""Thin launchers over the pst_jax library."""
