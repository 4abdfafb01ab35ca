"""Hardware catalog, collective and parallelism models, and projections onto clusters."""
