"""Pure JAX kernels with analytic FLOP/byte counts and references; no timing, no files."""
