"""Series → predictions: probabilities, flagged slices, lesion outlines and measurements."""

from assistant.inference.predict import Lesion, Prediction, SliceProbability, predict_series

__all__ = ["Lesion", "Prediction", "SliceProbability", "predict_series"]
