"""fer_lightning: facial emotion recognition with teacher-student pseudo-labeling."""

__version__ = "0.1.0"
