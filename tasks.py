"""Invoke entry point: the task collection lives in deploy/tasks.py."""

from deploy.tasks import ns

__all__ = ["ns"]
