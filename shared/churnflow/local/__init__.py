"""The local emulator stack (GCS, Pub/Sub, MLflow) run as plain processes: `churnflow local up|down|status`."""
