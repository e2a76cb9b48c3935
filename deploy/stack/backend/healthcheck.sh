# The backend container's healthcheck (docker-compose.yml runs it with bash every second):
# GET /health on the backend's own port. Prints the answer's status and body, as
# `python3 -m deploy.stack.backend.app --probe` does (Docker keeps the output: `docker
# inspect` and a failed deploy show why the backend is unhealthy); exits 0 on 200 only.
#
# bash and its /dev/tcp, not Python: Docker runs this in every backend container every
# second, and a Python probe (interpreter, urllib) cost 77 ms of CPU each time, 8 % of a
# core per container doing nothing; this costs 2.5 ms (bench/bench_stack.py part 4).
#
#   bash healthcheck.sh [PORT]        # default 8080
url="http://127.0.0.1:${1:-8080}/health"
if ! { exec 3<>"/dev/tcp/127.0.0.1/${1:-8080}"; } 2>/dev/null; then
    echo "no answer from $url: connection refused"
    exit 1
fi
printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
# The status line, then headers up to the blank line, then the body until the server
# closes (HTTP/1.0): each read gives up after 4 s (Docker's own timeout is 5 s).
if ! IFS=' ' read -r -t 4 _ status _ <&3 || [ -z "$status" ]; then
    echo "no answer from $url within 4 s"
    exit 1
fi
while IFS= read -r -t 4 line <&3 && [ -n "${line%$'\r'}" ]; do :; done
IFS= read -r -d '' -t 4 body <&3
echo "$status $body"
[ "$status" = 200 ]
