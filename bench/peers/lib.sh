# Shared helpers of the bench/peers scripts (sourced, not run).
# Every peer: `bench/peers/NAME start DIR [options]` prints key=value lines
# (ports, pids) on stdout once the peer answers, `stop DIR` stops it and
# waits. Everything lives under DIR; no system config file is touched.

die() { echo "${0##*/}: $*" >&2; exit 1; }

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT [SECONDS] [PREFIX]: until 127.0.0.1:PORT accepts (and, with
# PREFIX, its first line starts with PREFIX).
wait_port() {
  local port=$1 secs=${2:-20} prefix=${3:-}
  python3 - "$port" "$secs" "$prefix" <<'PY'
import socket, sys, time
port, secs, prefix = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
end = time.time() + secs
while time.time() < end:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            if not prefix:
                sys.exit(0)
            s.settimeout(2)
            line = s.makefile("rb").readline().decode("latin-1")
            if line.startswith(prefix):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

# stop_pid PIDFILE [SECONDS]: TERM, wait, then KILL.
stop_pid() {
  local f=$1 secs=${2:-10} pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

# opt NAME DEFAULT "$@": value of --NAME in the arguments, or DEFAULT.
opt() {
  local name=$1 def=$2; shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --"$name") echo "${2:-}"; return 0 ;;
      --"$name"=*) echo "${1#*=}"; return 0 ;;
    esac
    shift
  done
  echo "$def"
}

# open_dir DIR: makes DIR (0755) and checks that the unprivileged users of
# the peers (postfix, dovecot, nobody) can reach it: mktemp -d makes 0700
# folders and /root is private.
open_dir() {
  mkdir -p "$1"
  chmod 0755 "$1"
  if ! setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$1" 2>/dev/null; then
    die "$1 is not reachable by other users (a private parent folder); use one under /tmp"
  fi
}
