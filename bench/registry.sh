# Sourced by the benchmarks: starts Debian's docker-registry on a free loopback port with its
# storage in "$work" (which the caller made), sets `port` and `registry_pid`, and waits until
# it answers. The caller's EXIT trap stops it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/data}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
until curl -s "http://127.0.0.1:$port/v2/" >/dev/null; do sleep 0.1; done
