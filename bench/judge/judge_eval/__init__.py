"""The judge's evaluation harness: seeded request-level traffic, scenarios, baseline judges.

It feeds the pipeline's own judge (delivery.judge) through the same StepObservation the
metrics source builds. `python -m judge_eval` runs the full evaluation; docs/judge.md
shows its results.
"""
