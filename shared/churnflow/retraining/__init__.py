"""Retraining: the Pub/Sub trigger that starts the job, and the job that trains, gates and promotes."""
