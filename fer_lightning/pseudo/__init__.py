"""Pseudo-label selection: pure functions from teacher probabilities to a pseudo set."""
