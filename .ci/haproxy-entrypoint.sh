#!/bin/sh
# Entrypoint of the local Debian-based HAProxy image that .ci/build-images builds.
#
# It gives that image the interface of the official `haproxy` image: the same config path
# (/usr/local/etc/haproxy/haproxy.cfg), the same user (haproxy), the same stop signal
# (SIGUSR1: a soft stop) and the same command handling: `haproxy …` runs as
# `haproxy -W -db …` (master-worker, in the foreground), and options alone (`-f …`) mean
# haproxy with those options. This is a copy of that image's few lines, not more.
set -e
if [ "${1#-}" != "$1" ]; then
    set -- haproxy "$@"
fi
if [ "$1" = haproxy ]; then
    shift
    set -- haproxy -W -db "$@"
fi
exec "$@"
