"""Batch transform jobs with SageMaker's semantics, on this machine or spread over a Ray cluster."""
