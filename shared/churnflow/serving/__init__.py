"""The predict service: a FastAPI app that serves the registry's champion through the compiled scorer.

It imports neither sklearn, pandas nor MLflow: the model comes from the registry's REST API
(`registry.read`) as a compiled scorer artifact, and request logs go to GCS in batches.
"""

from churnflow.serving.app import create_app

__all__ = ["create_app"]
