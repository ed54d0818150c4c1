"""Cloud Run Job entry point: one retrain execution (see churnflow.retraining.job)."""

import sys

from churnflow.retraining.job import main

if __name__ == "__main__":
    sys.exit(main())
