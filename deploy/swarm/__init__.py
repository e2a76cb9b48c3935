"""The Docker Swarm target: `invoke deploy --target swarm` (or DEPLOY_TARGET=swarm).

One module per concern, each composing the pure argv builders and parsers of
deploy/commands/swarm.py and the stack file of deploy/commands/stackfile.py:

    target.py     the settings (DEPLOY_TARGET, SWARM_MANAGER, APP_REPLICAS, …) and the SSH
                  connection to the manager, with the hosts' trust rules
    images.py     the release's images: built here, shipped to every node (or pushed to
                  DEPLOY_REGISTRY), pinned so every node runs the same bytes
    oneoff.py     a one-off task (the migration runner) on the stack's network, polled to
                  its end, its exit code and log read, removed
    watch.py      a service's rollout polled to `completed` or a failure
    history.py    the releases the Swarm ran, kept in a small file on the manager
    deploy.py     the steps of a deploy and a rollback, in order
    views.py      ps, releases and logs
"""
