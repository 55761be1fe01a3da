"""Rollout: rendering InferenceServices and (later) canary policy, controller and backends."""
