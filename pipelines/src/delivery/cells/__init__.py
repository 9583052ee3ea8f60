"""Cells and waves (issue 15): an environment's cells, tenants placed in them, and rollouts of a
version across waves of cells. Pure functions over frozen dataclasses; see docs/cells.md."""
