"""ChurnFlow: a closed-loop MLOps system for a telecom churn model on Google Cloud."""

__version__ = "0.1.0"
