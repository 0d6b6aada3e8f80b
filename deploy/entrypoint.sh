#!/bin/sh
# Picks the role by the first argument:
#   api [serve|token …]        the intake API (k8or-api)
#   worker [run|provision|dlq …] the stage workers (k8or-worker)
#   healthcheck                 the container health check for either role
# Anything else runs as given.
set -eu

case "${1:-api}" in
  api)
    shift
    exec k8or-api "$@"
    ;;
  worker)
    shift
    exec k8or-worker "$@"
    ;;
  healthcheck)
    # API nodes answer /healthz on K8OR_LISTEN; worker nodes on K8OR_METRICS_LISTEN.
    addr="${K8OR_METRICS_LISTEN:-${K8OR_LISTEN:-127.0.0.1:8080}}"
    exec k8or-api healthcheck --addr "${addr}"
    ;;
  *)
    exec "$@"
    ;;
esac
