"""`fab -H web1,web2 TASK` finds the same tasks as `invoke TASK`; Fabric passes each
task a Connection per host, and the tasks run there (docs/design.md: which context arrives)."""

from deploy.tasks import ns

__all__ = ["ns"]
