"""Series → findings: probabilities, flagged slices, lesion outlines and measurements."""

from assistant.analysis.inference.predict import predict_series

__all__ = ["predict_series"]
