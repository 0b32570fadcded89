"""Rollout: which version of each model the workers serve, changed live (promotion and rollback)."""
