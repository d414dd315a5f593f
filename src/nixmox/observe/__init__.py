"""Observability: status, history, metrics, notifications, diagrams."""
