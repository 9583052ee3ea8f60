"""One module per layer: each builds its stack's resources and returns its exports."""
