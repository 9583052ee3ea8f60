"""`python -m delivery.simulation`: the full judge evaluation (see report.py)."""

from delivery.simulation.report import main

raise SystemExit(main())
