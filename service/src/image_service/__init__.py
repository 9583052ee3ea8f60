"""See the folder README."""
