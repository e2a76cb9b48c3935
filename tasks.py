"""Invoke entry point: the task collection lives in deploy/tasks/."""

from deploy.tasks import ns

__all__ = ["ns"]
