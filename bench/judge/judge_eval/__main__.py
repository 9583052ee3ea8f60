"""`python -m judge_eval`: the full judge evaluation (see report.py)."""

from judge_eval.report import main

raise SystemExit(main())
