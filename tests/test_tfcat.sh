#!/usr/bin/env bash
# tests/test_tfcat.sh -- tfcat end to end over loopback: listen + client lines (async and sync),
# echo, raw binary (0 bytes, 1 MiB, a NUL inside), hex and NUL-delimited input, --data/--file,
# many clients at once, clients with a wrong magic, an early close, silence past the deadline,
# a length over the max and a reset mid-frame (each dropped with one line while the server goes
# on), storms of such clients (10 lines a second, then a summary), a half-closing client's
# 8 MiB echo (async and --sync), a server with a wrong magic, an oversized reply, a reply
# timeout, refused connections, bad addresses and options, [::1], SIGTERM/SIGINT exit codes,
# --count, stdout closed early, --threads 2 (clients on both loops); an inherited listening
# socket (-l fd:N) and systemd socket activation (-l systemd: a launcher passes the socket as
# fd 3 with LISTEN_FDS=1 and LISTEN_PID), --local, --tos, --device; Unix-domain sockets (a path
# and an abstract name); -v's statistics line per client and --stats' JSON lines of the
# server's counters; TLS (--tls-*): mutual echo (async and --sync), each refused client with
# its reason, a wrong server name, a plaintext client, openssl s_client and s_server as peers
# (certificates made by the test with the openssl CLI).
#
#   TFCAT=build/bin/tfcat tests/test_tfcat.sh        (make check runs it via check-tfcat)
#
# Prints cmocka's summary lines, so scripts/run-test.sh records "passed failed" in
# build/results. Load-independent: servers are waited for by their "listening on" line, never
# by a fixed sleep; every wait has a generous deadline; background processes are killed on
# exit. TF_TEST_FILTER='*echo*' runs the matching tests only. Raw peers use python3.
set -u
TFCAT=$(realpath "${TFCAT:-build/bin/tfcat}")
[ -x "$TFCAT" ] || { echo "test_tfcat: no executable $TFCAT"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_tfcat.XXXXXX")
bg=() # pids of background processes of the current test
cleanup() {
  for p in "${bg[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 99' INT TERM
LIMIT=60 # seconds any single step may take before it counts as hung

# ---------------------------------------------------------------- helpers

say() { echo "    $*"; }
show() { sed 's/^/      | /' "$1" | head -20; }
assert_eq() { [ "$1" = "$2" ] || { say "expected [$2], got [$1] ${3:-}"; return 1; }; }
assert_grep() {
  grep -q -- "$2" "$1" || { say "$(basename "$1") lacks [$2]:"; show "$1"; return 1; }
}
assert_lines() { # FILE N: exactly N lines
  local n; n=$(wc -l <"$1")
  [ "$n" -eq "$2" ] || { say "$(basename "$1"): $n lines, expected $2"; show "$1"; return 1; }
}
tfcat() { timeout -k 5 "$LIMIT" "$TFCAT" "$@"; }

# wait_for FILE PATTERN [SECONDS]: until a line of FILE matches (polls; no fixed sleep).
wait_for() {
  local end=$((SECONDS + ${3:-$LIMIT}))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt $end ] || { say "timed out waiting for [$2] in $(basename "$1")"; show "$1"; return 1; }
    sleep 0.02
  done
}

# serve NAME ARGS...: start `tfcat ARGS... -l ...` in the background with its stdout in
# $tmp/NAME.out and stderr in $tmp/NAME.err; wait for its first stderr line; set SRV (pid),
# ADDR (as printed) and PORT. The caller passes -l ADDR itself.
serve() {
  local name=$1; shift
  rm -f "$tmp/$name.out" "$tmp/$name.err" # not an earlier server's "listening on" line
  "$TFCAT" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  SRV=$!
  bg+=("$SRV")
  wait_for "$tmp/$name.err" '^listening on ' || return 1
  local first; first=$(head -1 "$tmp/$name.err")
  ADDR=${first#listening on }
  PORT=${ADDR##*:}
}

# reap PID [SECONDS]: wait for PID to exit (killing it after the deadline); RC = its status.
reap() {
  local end=$((SECONDS + ${2:-$LIMIT}))
  while kill -0 "$1" 2>/dev/null; do
    if [ $SECONDS -ge $end ]; then
      say "pid $1 still running after ${2:-$LIMIT}s: killed"
      kill -KILL "$1" 2>/dev/null
      break
    fi
    sleep 0.02
  done
  wait "$1" 2>/dev/null
  RC=$?
}

# stop PID [SIGNAL]: signal the server and expect exit status 0.
stop() {
  kill -"${2:-TERM}" "$1" 2>/dev/null
  reap "$1"
  assert_eq "$RC" 0 "(exit status after SIG${2:-TERM})"
}

# A raw peer in python3 (independent of the library): see the modes below.
cat >"$tmp/peer.py" <<'EOF'
import socket, struct, sys, time
mode = sys.argv[1]
def listen(portfile):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0)); s.listen(4)
    with open(portfile + ".tmp", "w") as f: f.write(str(s.getsockname()[1]))
    import os; os.rename(portfile + ".tmp", portfile)
    return s
def readn(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d: break
        b += d
    return b
if mode == "srv-magic":          # a server that answers with another protocol's greeting
    s = listen(sys.argv[2]); c, _ = s.accept()
    c.sendall(sys.argv[3].encode()); readn(c, 4); time.sleep(0.2); c.close()
elif mode == "srv-bigreply":     # handshakes, reads one frame, replies with a 2 GiB length
    s = listen(sys.argv[2]); c, _ = s.accept()
    c.sendall(b"UNIF"); readn(c, 4)
    n = struct.unpack(">I", readn(c, 4))[0]; readn(c, n)
    c.sendall(struct.pack(">I", 0x7fffffff) + b"xx")
    c.settimeout(30); 
    try:
        while c.recv(65536): pass
    except Exception: pass
    c.close()
elif mode == "storm":            # N clients: "magic" sends a wrong magic, "rst" handshakes
    port, n, kind = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]   # then resets at once
    for i in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        if kind == "magic":
            c.sendall(b"XXXX"); readn(c, 4); c.settimeout(30); readn(c, 1); c.close()
        else:
            c.sendall(b"UNIF"); readn(c, 4)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
elif mode == "halfclose":        # a request of N bytes, shutdown(SHUT_WR), read to EOF
    c = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    n = int(sys.argv[3]); body = bytes(i % 251 for i in range(n))
    c.sendall(b"UNIF"); readn(c, 4); c.sendall(struct.pack(">I", n) + body)
    c.shutdown(socket.SHUT_WR); c.settimeout(60)
    got = b""
    while True:
        d = c.recv(1 << 20)
        if not d: break
        got += d
    ok = got == struct.pack(">I", n) + body
    print("%d %s" % (len(got), "intact" if ok else "differs"))
elif mode == "cli-rst":          # handshakes, sends half a frame, then resets the connection
    c = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    c.sendall(b"UNIF"); readn(c, 4); c.sendall(b"\0\0\0\x10abc"); time.sleep(0.1)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
EOF
# A launcher as systemd's socket activation is one: a listening socket on 127.0.0.1:0 as fd FD
# (port written to PORTFILE), then exec of the command; with "sd", LISTEN_PID (the pid the
# command will have: exec keeps it) and LISTEN_FDS=1 set, as sd_listen_fds(3) expects.
cat >"$tmp/launch.py" <<'EOF'
import os, socket, sys
fd, mode, portfile, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0)); s.listen(16)
with open(portfile, "w") as f: f.write(str(s.getsockname()[1]))
if s.fileno() != fd:
    os.dup2(s.fileno(), fd); s.close()
os.set_inheritable(fd, True)
if mode == "sd":
    os.environ["LISTEN_PID"] = str(os.getpid()); os.environ["LISTEN_FDS"] = "1"
os.execvp(cmd[0], cmd)
EOF
PY=$(command -v python3 || true)
peer_bg() { # MODE ARGS...: background python peer
  timeout -k 5 "$LIMIT" "$PY" "$tmp/peer.py" "$@" &
  bg+=($!)
  PEER=$!
}
wait_port() { # FILE: the port a python server wrote
  wait_for "$1" '[0-9]' || return 1
  PPORT=$(cat "$1")
}
need_python() { [ -n "$PY" ] || { say "python3 missing: cannot run this test"; return 1; }; }

# ---------------------------------------------------------------- tests

test_tfcat_lines_async() {
  serve s -l 127.0.0.1:0 || return 1
  printf 'hello\n\nworld\nno newline at the end' | tfcat "$ADDR" || { say "client failed"; return 1; }
  printf 'second client\n' | tfcat "$ADDR" || return 1
  wait_for "$tmp/s.out" '^second client$' || return 1
  stop "$SRV" || return 1
  printf 'hello\n\nworld\nno newline at the end\nsecond client\n' >"$tmp/want"
  cmp "$tmp/want" "$tmp/s.out" || { show "$tmp/s.out"; return 1; }
  assert_lines "$tmp/s.err" 1
}

test_tfcat_lines_sync_server_sync_client_sigint() {
  serve s --sync -v -l 127.0.0.1:0 || return 1
  printf 'one\ntwo\n' | tfcat --sync "$ADDR" || return 1
  printf 'three\n' | tfcat "$ADDR" || return 1 # async client, sync server
  wait_for "$tmp/s.err" 'closed after 1 message$' || return 1
  stop "$SRV" INT || return 1
  printf 'one\ntwo\nthree\n' >"$tmp/want"
  cmp "$tmp/want" "$tmp/s.out" || { show "$tmp/s.out"; return 1; }
  assert_grep "$tmp/s.err" '^tfcat: [^ ]*: accepted$'
}

test_tfcat_echo_recv_async_and_sync() {
  for mode in "" --sync; do
    serve s $mode --echo -l 127.0.0.1:0 || return 1
    seq 1 100 >"$tmp/in"
    tfcat --recv "$ADDR" <"$tmp/in" >"$tmp/got" || { say "async client ($mode server)"; return 1; }
    cmp "$tmp/in" "$tmp/got" || return 1
    tfcat --sync --recv "$ADDR" <"$tmp/in" >"$tmp/got" || { say "sync client ($mode server)"; return 1; }
    cmp "$tmp/in" "$tmp/got" || return 1
    stop "$SRV" || return 1
    [ ! -s "$tmp/s.out" ] || { say "--echo printed something"; return 1; }
  done
}

# Frames: empty, 1 MiB of random bytes, "a\0b"; through an echo server and back, and printed
# by a --raw server: both byte-exact.
test_tfcat_raw_binary_zero_and_1mib() {
  { printf '\0\0\0\0\0\x10\0\0'; head -c 1048576 /dev/urandom; printf '\0\0\0\3a\0b'; } >"$tmp/in.bin"
  serve e --echo -l 127.0.0.1:0 || return 1
  tfcat --raw --recv "$ADDR" <"$tmp/in.bin" >"$tmp/back.bin" || return 1
  cmp "$tmp/in.bin" "$tmp/back.bin" || { say "echo not byte-exact"; return 1; }
  tfcat --sync --raw --recv "$ADDR" <"$tmp/in.bin" >"$tmp/back.bin" || return 1
  cmp "$tmp/in.bin" "$tmp/back.bin" || { say "echo (sync client) not byte-exact"; return 1; }
  stop "$SRV" || return 1
  serve p --raw --count 3 -l 127.0.0.1:0 || return 1
  tfcat --raw "$ADDR" <"$tmp/in.bin" || return 1
  reap "$SRV"
  assert_eq "$RC" 0 "(--count 3 server)" || return 1
  cmp "$tmp/in.bin" "$tmp/p.out" || { say "--raw server output differs"; return 1; }
  # input that ends inside a frame is an error (exit 1) naming stdin
  serve q -l 127.0.0.1:0 || return 1
  printf '\0\0\0\5ab' | tfcat --raw "$ADDR" 2>"$tmp/c.err"
  assert_eq "$?" 1 "(truncated raw input)" || return 1
  assert_grep "$tmp/c.err" 'stdin: input ends inside a 5-byte frame' || return 1
  stop "$SRV"
}

test_tfcat_hex_nul_data_file_interval() {
  serve s --hex -l 127.0.0.1:0 || return 1
  printf 'a\0b c\0\0' | tfcat -0 "$ADDR" || return 1
  tfcat --data hi --count 3 --interval 50 "$ADDR" </dev/null || return 1
  printf 'x\ny' >"$tmp/f"
  tfcat --file "$tmp/f" "$ADDR" || return 1
  wait_for "$tmp/s.out" '^780a79$' || return 1
  stop "$SRV" || return 1
  printf '61\n622063\n\n6869\n6869\n6869\n780a79\n' >"$tmp/want"
  cmp "$tmp/want" "$tmp/s.out" || { show "$tmp/s.out"; return 1; }
}

test_tfcat_many_clients_at_once() {
  for mode in "" --sync; do
    serve s $mode -l 127.0.0.1:0 || return 1
    local pids=() i
    for i in 1 2 3 4 5 6 7 8; do
      seq -f "c$i-%g" 1 200 | tfcat --interval 1 "$ADDR" &
      pids+=($!)
    done
    for i in "${pids[@]}"; do
      wait "$i" || { say "a client failed ($mode)"; return 1; }
    done
    wait_for "$tmp/s.out" . || return 1
    local end=$((SECONDS + LIMIT))
    until [ "$(wc -l <"$tmp/s.out")" -ge 1600 ] || [ $SECONDS -ge $end ]; do sleep 0.05; done
    stop "$SRV" || return 1
    for i in 1 2 3 4 5 6 7 8; do seq -f "c$i-%g" 1 200; done | sort >"$tmp/want"
    sort "$tmp/s.out" | cmp - "$tmp/want" || { say "lost or mixed messages ($mode)"; return 1; }
  done
}

# The bytes on the wire, written and read by bash itself (not the library): the magic each way,
# then a 4-byte big-endian length and the payload; and the same without the handshake.
test_tfcat_wire_bytes_and_no_handshake() {
  serve s --echo -l 127.0.0.1:0 || return 1
  exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
  local m; read -r -N 4 -t 30 -u $fd m
  assert_eq "$m" UNIF "(the server's magic)" || return 1
  printf 'UNIF\0\0\0\2hi' >&$fd
  timeout 30 head -c 6 <&$fd | od -An -c | tr -s ' ' >"$tmp/wire"
  exec {fd}>&-
  assert_eq "$(cat "$tmp/wire")" " \0 \0 \0 002 h i" "(the echo frame)" || return 1
  stop "$SRV" || return 1
  serve n --no-handshake -l 127.0.0.1:0 || return 1
  exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
  printf '\0\0\0\3abc' >&$fd
  wait_for "$tmp/n.out" '^abc$' || return 1
  exec {fd}>&-
  echo plain | tfcat --no-handshake "$ADDR" || return 1
  wait_for "$tmp/n.out" '^plain$' || return 1
  stop "$SRV"
}

# A client that sends much faster than it reads its echoes (it reads them only to drop them):
# the async echo server pauses reading instead of queueing without bound or dropping it.
# Issue 25.1: a client sends 8 x 1 MiB frames, shuts down its write side and reads until EOF:
# every echo comes back from the async server and from the sync one (before: 0 bytes from the
# async server -- the clean EOF failed the queued echoes).
half_close_client() { # ADDR COUNT SIZE -> prints the bytes read before EOF
  python3 - "$1" "$2" "$3" <<'PY'
import socket, struct, sys, threading
host, port = sys.argv[1].rsplit(":", 1)
n, size = int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host.strip("[]"), int(port)))
s.sendall(b"UNIF")
def send():
    for i in range(n):
        s.sendall(struct.pack(">I", size) + bytes([i % 251]) * size)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send); t.start()
got = b""
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    got += b
t.join()
ok = got[:4] == b"UNIF"
off = 4
for i in range(n):
    ok = ok and got[off:off + 4] == struct.pack(">I", size) and got[off + 4:off + 4 + size] == bytes([i % 251]) * size
    off += 4 + size
print(len(got) - 4, "ok" if ok and off == len(got) else "bad")
PY
}

test_tfcat_half_close_large_reply() {
  local mode
  for mode in "" --sync; do
    serve h $mode -v --echo -l 127.0.0.1:0 || return 1
    local out; out=$(timeout -k 5 "$LIMIT" bash -c "$(declare -f half_close_client); half_close_client $ADDR 8 1048576")
    assert_eq "$out" "8388640 ok" "(server${mode:+ $mode})" || { show "$tmp/h.err"; return 1; }
    say "(${mode:-async} server: $out bytes echoed after the half-close)"
    stop "$SRV" || return 1
  done
}

# 1,500,000 lines from an async and a sync client through the async echo server, which pauses
# reading while its send queue is full: every echo comes back, nobody is dropped.
#
# Issue 25 item 8: under load (two to four copies at once beside a CPU hog and other work) it
# failed in 5 of 272 runs, always with the async client, both ends stuck for TCP_USER_TIMEOUT's
# 60 s ("send: connection timed out" or "reset by peer" here, "dropped: connection timed out"
# from the server). The sockets then (ss, captured after 40 s): the server, paused for its full
# send queue, had its receive queue over its buffer (r2115072 > rb2097152) and had processed no
# ACK for 27-35 s, although the client had every byte the server sent (its bytes_received passed
# the server's bytes_acked; the server got DSACKs) or had an open window (the server sat in
# zero-window probing); the client in RTO back-off with cwnd 1; TcpExtBeyondWindow and
# TcpExtTCPRcvQDrop rising. Our reading: Linux (6.17+; 6.18 here) drops a segment that ends beyond the window of
# a receiver whose receive queue is not empty, with the ACK it carries, so a receiver that reads
# again only once its own sends drain never sees them acknowledged. Not fixed yet; stall_watch
# prints the sockets when a client runs for 40 s, so a failure shows which side stopped.
stall_watch() { # PORT PID: after 40 s of PID, the TCP state of PORT's sockets into $tmp/stall
  local end=$((SECONDS + 40))
  while kill -0 "$2" 2>/dev/null; do
    if [ $SECONDS -ge $end ]; then
      { echo "after 40 s:"; ss -tnmoi "( sport = :$1 or dport = :$1 )" 2>&1
        nstat -az TcpExtBeyondWindow TcpExtTCPRcvQDrop TcpExtTCPACKSkippedSeq 2>&1; } >"$tmp/stall"
      return
    fi
    sleep 0.5
  done
}
echo_client() { # MODE: 1,500,000 lines through the echo server; the sockets shown if it fails
  rm -f "$tmp/stall"
  seq 1 1500000 | tfcat $1 "$ADDR" & local c=$!
  stall_watch "$PORT" $c & local w=$!
  wait $c; local rc=$?
  wait $w
  [ $rc = 0 ] && return 0
  say "${1:-async} client: exit $rc"; show "$tmp/s.err"
  [ -f "$tmp/stall" ] && sed 's/^/      | /' "$tmp/stall"
  return 1
}
test_tfcat_echo_backpressure() {
  local LIMIT=300 # 3 million messages: slow under ASan on a busy machine
  serve s -v --echo -l 127.0.0.1:0 || return 1
  echo_client "" || return 1
  echo_client --sync || return 1
  wait_for "$tmp/s.err" 'closed after 1500000 messages' || return 1
  stop "$SRV" || return 1
  if grep dropped "$tmp/s.err"; then return 1; fi
  grep 'reading paused' "$tmp/s.err" | head -2 | sed 's/^/    (/; s/$/)/'
}

# Issue 25 item 6: --threads 2: the clients are spread over both loops (round robin when they
# come one after another), every echo comes back, 4 clients streaming at once as well, and
# SIGTERM with clients connected on both loops exits cleanly.
test_tfcat_listen_threads() {
  serve s -v --echo --threads 2 -l 127.0.0.1:0 || return 1
  local i
  for i in 1 2; do
    seq 1 2000 | tfcat --recv "$ADDR" >"$tmp/c$i.out" || { say "client $i"; return 1; }
    assert_eq "$(wc -l <"$tmp/c$i.out")" 2000 "(echoes of client $i)" || return 1
    assert_eq "$(tail -1 "$tmp/c$i.out")" 2000 || return 1
  done
  assert_grep "$tmp/s.err" ': accepted on loop 1$' || return 1
  assert_grep "$tmp/s.err" ': accepted on loop 2$' || return 1
  local pids=()
  for i in 3 4 5 6; do
    seq 1 200000 | tfcat "$ADDR" 2>"$tmp/c$i.err" &
    pids+=($!); bg+=($!)
  done
  for p in "${pids[@]}"; do
    reap "$p"
    assert_eq "$RC" 0 "(a streaming client)" || { show "$tmp/s.err"; return 1; }
  done
  wait_for "$tmp/s.err" 'closed after 200000 messages' || return 1
  assert_eq "$(grep -c 'closed after 200000 messages' "$tmp/s.err")" 4 || { show "$tmp/s.err"; return 1; }
  # two idle clients still connected, then SIGTERM
  exec {c1}<>"/dev/tcp/127.0.0.1/$PORT"; printf 'UNIF' >&$c1
  exec {c2}<>"/dev/tcp/127.0.0.1/$PORT"; printf 'UNIF' >&$c2
  local end=$((SECONDS + LIMIT))
  until [ "$(grep -c ': accepted' "$tmp/s.err")" -ge 8 ]; do
    [ $SECONDS -lt $end ] || { say "idle clients not accepted"; show "$tmp/s.err"; return 1; }
    sleep 0.02
  done
  stop "$SRV" || return 1
  exec {c1}>&- {c2}>&-
  if grep dropped "$tmp/s.err"; then return 1; fi
}

# Bad clients are dropped with one line each; a good client still gets through.
test_tfcat_bad_clients_dropped_server_goes_on() {
  for mode in "" --sync; do
    serve s $mode --timeout 300 -l 127.0.0.1:0 || return 1
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; printf 'HTTP/1.0\r\n' >&$fd
    wait_for "$tmp/s.err" 'handshake: wrong magic' || return 1
    exec {fd}>&-
    # (each raw client reads the server's magic first, so that its close is a FIN, not a reset)
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; read -r -N 4 -t 30 -u $fd m
    printf 'UN' >&$fd; exec {fd}>&-
    wait_for "$tmp/s.err" 'handshake: the peer closed the connection before its magic' || return 1
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" # silent past the 300 ms deadline
    wait_for "$tmp/s.err" 'handshake: timed out' || return 1
    exec {fd}>&-
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; read -r -N 4 -t 30 -u $fd m
    printf 'UNIF\377\377\377\377' >&$fd
    wait_for "$tmp/s.err" 'dropped: message length exceeds the maximum' || return 1
    exec {fd}>&-
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; read -r -N 4 -t 30 -u $fd m
    printf 'UNIF\0\0\0\20abc' >&$fd; exec {fd}>&-
    wait_for "$tmp/s.err" 'dropped: peer closed the connection in the middle of a message' || return 1
    if [ -n "$PY" ]; then
      "$PY" "$tmp/peer.py" cli-rst "$PORT" || return 1
      wait_for "$tmp/s.err" 'dropped: connection reset by peer' || return 1
    fi
    echo good | tfcat "$ADDR" || return 1
    wait_for "$tmp/s.out" '^good$' || return 1
    stop "$SRV" || return 1
    # every line after the first names a client address
    if sed 1d "$tmp/s.err" | grep -v '^tfcat: 127\.0\.0\.1:[0-9]*: ' >&2; then
      say "a line without the client's address"; return 1
    fi
  done
}

# Issue 25 item 7: a storm of bad clients gives at most 10 drop lines a second, then one
# summary line per second with the count and the reasons; every client is accounted for
# (lines + summed counts). Clients that reset right after their handshake are named by the
# address taken at accept, never "?" (sync server; the async server names them as its library
# reports them).
test_tfcat_drop_lines_rate_limited() {
  need_python || return 1
  local mode kind n=200
  for mode in "" --sync; do
    for kind in magic rst; do
      serve s $mode -l 127.0.0.1:0 || return 1
      local t0=$SECONDS
      "$PY" "$tmp/peer.py" storm "$PORT" $n $kind || return 1
      local secs=$((SECONDS - t0 + 2)) # seconds the storm may have spanned, rounded up
      wait_for "$tmp/s.err" 'more clients dropped (' || return 1
      # the summary may still be counting stragglers: wait until every client is accounted for
      local end=$((SECONDS + LIMIT)) lines more
      while :; do
        lines=$(grep -c -- ': handshake: \|: dropped: ' "$tmp/s.err")
        more=$(sed -n 's/^tfcat: \([0-9]*\) more clients\{0,1\} dropped (.*/\1/p' "$tmp/s.err" |
               awk '{t += $1} END {print t + 0}')
        [ $((lines + more)) -ge $n ] || [ $SECONDS -ge $end ] && break
        sleep 0.05
      done
      stop "$SRV" || return 1
      assert_eq $((lines + more)) $n "(drop lines $lines + summarised $more, $kind$mode)" || return 1
      [ "$lines" -le $((10 * secs)) ] ||
        { say "$lines drop lines in at most $secs s: not rate-limited"; show "$tmp/s.err"; return 1; }
      if [ "$mode" = --sync ] && grep -q '^tfcat: ?:' "$tmp/s.err"; then
        say "a dropped client named \"?\""; show "$tmp/s.err"; return 1
      fi
      say "$kind$mode: $lines lines, $more summarised: $(grep -m1 'more clients' "$tmp/s.err")"
    done
  done
}

# Issue 25 item 1 (sync side): a client sends an 8 MiB request, half-closes, and reads the
# echo to EOF: every byte comes back. (The async server is the lead's part of the issue; add
# its mode here once it keeps sending after the peer's half-close.)
test_tfcat_sync_half_close_large_reply() {
  need_python || return 1
  serve s --sync --echo -l 127.0.0.1:0 || return 1
  local got; got=$(timeout -k 5 "$LIMIT" "$PY" "$tmp/peer.py" halfclose "$PORT" 8388608) || return 1
  stop "$SRV" || return 1
  assert_eq "$got" "8388612 intact" "(bytes read before EOF)"
}

test_tfcat_server_with_wrong_magic() {
  need_python || return 1
  rm -f "$tmp/port"
  peer_bg srv-magic "$tmp/port" "SSH-"
  wait_port "$tmp/port" || return 1
  tfcat --data x "127.0.0.1:$PPORT" 2>"$tmp/c.err"
  assert_eq "$?" 1 || return 1
  assert_grep "$tmp/c.err" "^tfcat: 127.0.0.1:$PPORT: handshake: wrong magic" || return 1
  assert_lines "$tmp/c.err" 1
}

test_tfcat_oversized_reply() {
  need_python || return 1
  for mode in "" --sync; do
    rm -f "$tmp/port"
    peer_bg srv-bigreply "$tmp/port"
    wait_port "$tmp/port" || return 1
    tfcat $mode --recv --data x "127.0.0.1:$PPORT" >"$tmp/c.out" 2>"$tmp/c.err"
    assert_eq "$?" 1 "($mode)" || return 1
    assert_grep "$tmp/c.err" "^tfcat: 127.0.0.1:$PPORT: receive: message length exceeds the maximum" || return 1
    reap "$PEER"
  done
}

test_tfcat_reply_timeout() {
  serve s -l 127.0.0.1:0 || return 1 # prints, never replies
  for mode in "" --sync; do
    tfcat $mode --recv --timeout 300 --data x "$ADDR" 2>"$tmp/c.err"
    assert_eq "$?" 1 "($mode)" || return 1
    assert_grep "$tmp/c.err" "^tfcat: $ADDR: receive: no reply within 300 ms" || return 1
  done
  stop "$SRV"
}

test_tfcat_refused_connection() {
  serve s -l 127.0.0.1:0 || return 1
  stop "$SRV" || return 1 # the port is free now
  for mode in "" --sync; do
    tfcat $mode --data x "$ADDR" 2>"$tmp/c.err"
    assert_eq "$?" 1 "($mode)" || return 1
    assert_grep "$tmp/c.err" "^tfcat: $ADDR: connect: connection refused$" || return 1
    assert_lines "$tmp/c.err" 1 || return 1
  done
}

test_tfcat_bad_address_and_usage() {
  local args
  while IFS='|' read -r args want; do
    eval "tfcat $args" </dev/null >/dev/null 2>"$tmp/c.err"
    assert_eq "$?" 2 "(tfcat $args)" || return 1
    assert_grep "$tmp/c.err" "$want" || return 1
  done <<'EOF'
127.0.0.1|bad address "127.0.0.1"
-l 127.0.0.1:99999|"127.0.0.1:99999"
-l '[::1'|"\[::1"
host.invalid:7|"host.invalid:7"
--bogus 127.0.0.1:1|unknown option "--bogus"
--count x 127.0.0.1:1|--count: bad value "x"
--max-frame 5G 127.0.0.1:1|--max-frame: bad value
|missing ADDR
-l 127.0.0.1:0 --recv|for connecting
--echo 127.0.0.1:1|--echo is for listening
-l 127.0.0.1:0 --threads 0|--threads: bad value
-l 127.0.0.1:0 --threads 65|--threads: bad value
-l 127.0.0.1:0 --sync --threads 2|--threads is for the async listener
--threads 2 127.0.0.1:1|--threads is for the async listener
EOF
  tfcat --help >"$tmp/h" || return 1
  assert_grep "$tmp/h" 'one thread per client' || return 1
  tfcat --version | grep -q '^tfcat (tcpframe) [0-9]' || { say "--version"; return 1; }
}

test_tfcat_ipv6_and_families() {
  serve s -l '[::1]:0' || return 1
  case $ADDR in "[::1]:"[0-9]*) ;; *) say "bound address [$ADDR]"; return 1 ;; esac
  echo six | tfcat "$ADDR" || return 1
  echo sync six | tfcat --sync "[::1]:$PORT" || return 1
  wait_for "$tmp/s.out" '^sync six$' || return 1
  stop "$SRV" || return 1
  assert_eq "$(cat "$tmp/s.out")" "$(printf 'six\nsync six')" || return 1
  serve s4 -4 -l :0 || return 1
  case $ADDR in 0.0.0.0:*) ;; *) say "-4 wildcard bound [$ADDR]"; return 1 ;; esac
  echo four | tfcat -4 "127.0.0.1:$PORT" || return 1
  wait_for "$tmp/s4.out" '^four$' || return 1
  stop "$SRV"
}

# SIGTERM with a client connected (idle) and SIGINT: exit 0, promptly.
test_tfcat_sigterm_with_live_client() {
  for mode in "" --sync; do
    serve s $mode -v -l 127.0.0.1:0 || return 1
    rm -f "$tmp/fifo"; mkfifo "$tmp/fifo"
    tfcat "$ADDR" <"$tmp/fifo" >/dev/null 2>&1 & # its stdin stays open while we hold $w
    local cli=$!
    bg+=("$cli")
    exec {w}>"$tmp/fifo"
    echo hi >&$w
    wait_for "$tmp/s.out" '^hi$' || return 1
    local t0=$SECONDS
    stop "$SRV" TERM || return 1
    [ $((SECONDS - t0)) -le 10 ] || { say "took $((SECONDS - t0)) s to exit"; return 1; }
    exec {w}>&-
  done
}

test_tfcat_count() {
  for mode in "" --sync; do
    serve s $mode --count 3 -l 127.0.0.1:0 || return 1
    seq 1 3 | tfcat "$ADDR" || return 1
    reap "$SRV"
    assert_eq "$RC" 0 "(--count 3 $mode)" || return 1
    assert_eq "$(cat "$tmp/s.out")" "$(seq 1 3)" || return 1
    serve e $mode --echo --count 2 -l 127.0.0.1:0 || return 1
    printf 'a\nb\n' | tfcat --recv "$ADDR" >"$tmp/got" || return 1
    reap "$SRV"
    assert_eq "$RC" 0 "(--echo --count 2 $mode)" || return 1
    assert_eq "$(cat "$tmp/got")" "$(printf 'a\nb')" || return 1
  done
  seq 1 10 >"$tmp/in"
  serve e --echo -l 127.0.0.1:0 || return 1
  tfcat --recv --count 4 "$ADDR" <"$tmp/in" >"$tmp/got" || return 1
  assert_eq "$(cat "$tmp/got")" "$(seq 1 4)" || return 1
  stop "$SRV"
}

# stdout closed early: no death by SIGPIPE, no message, exit 0.
test_tfcat_stdout_closed_early() {
  serve e --echo -l 127.0.0.1:0 || return 1
  seq 1 100000 | tfcat --recv "$ADDR" 2>"$tmp/c.err" | head -1 >/dev/null
  local st=("${PIPESTATUS[@]}")
  assert_eq "${st[1]}" 0 "(client status, stdout closed by head)" || return 1
  [ ! -s "$tmp/c.err" ] || { say "client complained:"; show "$tmp/c.err"; return 1; }
  stop "$SRV" || return 1
  # a server whose stdout reader leaves after one byte: it exits 0 at its next message
  "$TFCAT" -l 127.0.0.1:0 2>"$tmp/p.err" > >(head -c 1 >/dev/null) &
  local srv=$!
  bg+=("$srv")
  wait_for "$tmp/p.err" '^listening on ' || return 1
  local a; a=$(sed -n '1s/^listening on //p' "$tmp/p.err")
  local i
  for i in $(seq 1 50); do
    echo "$i" | tfcat "$a" 2>/dev/null || break # refused once the server is gone
    kill -0 "$srv" 2>/dev/null || break
  done
  reap "$srv"
  assert_eq "$RC" 0 "(server exit status, stdout closed)" || return 1
  assert_lines "$tmp/p.err" 1
}

# ---------------------------------------------------------------- inherited sockets

# launch NAME FD MODE ARGS...: start tfcat ARGS... under the launcher (the socket as fd FD);
# wait for "listening on"; SRV, ADDR, PORT as serve(); LPORT the port the launcher bound.
launch() {
  local name=$1 fd=$2 mode=$3; shift 3
  rm -f "$tmp/$name.out" "$tmp/$name.err" "$tmp/$name.port"
  "$PY" "$tmp/launch.py" "$fd" "$mode" "$tmp/$name.port" "$TFCAT" "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  SRV=$!
  bg+=("$SRV")
  wait_for "$tmp/$name.err" '^listening on ' || return 1
  ADDR=$(sed -n '1s/^listening on //p' "$tmp/$name.err")
  PORT=${ADDR##*:}
  LPORT=$(cat "$tmp/$name.port")
}

test_tfcat_listen_inherited_fd() {
  need_python || return 1
  for mode in "" --sync; do
    launch s 5 plain $mode -l fd:5 || return 1
    assert_eq "$PORT" "$LPORT" "(tfcat serves the launcher's socket)" || return 1
    printf 'via fd 5\n' | tfcat "$ADDR" || return 1
    wait_for "$tmp/s.out" '^via fd 5$' || return 1
    stop "$SRV" || return 1
  done
  # Not a listening socket, not open: one line, exit 2 (usage).
  tfcat -l fd:0 </dev/null 2>"$tmp/c.err"
  assert_eq "$?" 2 "(stdin is not a socket)" || return 1
  assert_grep "$tmp/c.err" 'listen fd 0: not a socket' || return 1
  tfcat -l fd:77 2>"$tmp/c.err"
  assert_eq "$?" 2 "(fd 77 not open)" || return 1
  assert_grep "$tmp/c.err" 'fd 77 is not open' || return 1
  tfcat -l fd:x 2>"$tmp/c.err"
  assert_eq "$?" 2 "(fd:x)" || return 1
}

# Socket activation as systemd does it: fd 3, LISTEN_FDS=1, LISTEN_PID = tfcat's pid.
test_tfcat_systemd_socket_activation() {
  need_python || return 1
  for mode in "" --sync; do
    launch a 3 sd $mode -v --echo -l systemd || return 1
    assert_eq "$PORT" "$LPORT" "(tfcat serves the activated socket)" || return 1
    seq 1 20 >"$tmp/in"
    tfcat --recv "$ADDR" <"$tmp/in" >"$tmp/got" || return 1
    cmp "$tmp/in" "$tmp/got" || { say "echo through the activated socket ($mode)"; return 1; }
    stop "$SRV" || return 1
  done
  # Not activated, or activated for another process: usage errors naming the reason.
  env -u LISTEN_PID -u LISTEN_FDS "$TFCAT" -l systemd 2>"$tmp/c.err"
  assert_eq "$?" 2 "(no LISTEN_FDS)" || return 1
  assert_grep "$tmp/c.err" 'LISTEN_PID and LISTEN_FDS are not set' || return 1
  LISTEN_PID=1 LISTEN_FDS=1 "$TFCAT" -l systemd 2>"$tmp/c.err"
  assert_eq "$?" 2 "(LISTEN_PID of another process)" || return 1
  assert_grep "$tmp/c.err" 'LISTEN_PID is 1, not this process' || return 1
}

# --local: the server sees the client's chosen address; --tos and --device are accepted and
# checked (a bad value is a usage error; an unknown device a runtime error naming the address).
test_tfcat_local_tos_device() {
  serve s -v -l 127.0.0.1:0 || return 1
  echo hi | tfcat --local 127.0.0.9:0 --tos 0x28 "$ADDR" || return 1
  wait_for "$tmp/s.out" '^hi$' || return 1
  assert_grep "$tmp/s.err" '^tfcat: 127\.0\.0\.9:[0-9]*: accepted' || return 1
  echo x | tfcat --tos 256 "$ADDR" 2>"$tmp/c.err"
  assert_eq "$?" 2 "(--tos 256)" || return 1
  echo x | tfcat --local localhost:0 "$ADDR" 2>"$tmp/c.err"
  assert_eq "$?" 2 "(--local with a name)" || return 1
  assert_grep "$tmp/c.err" 'local_addr' || return 1
  echo x | tfcat --device tfnodev0 "$ADDR" 2>"$tmp/c.err"
  assert_eq "$?" 1 "(--device tfnodev0)" || return 1
  assert_grep "$tmp/c.err" "$ADDR: connect: " || return 1
  stop "$SRV" || return 1
  "$TFCAT" --device lo -l 127.0.0.1:0 2>"$tmp/d.err" &
  local p=$!
  bg+=("$p")
  wait_for "$tmp/d.err" '^listening on ' || return 1
  stop "$p"
}

# Unix-domain sockets (SPEC 9.9): a path (async and --sync servers, async and sync clients,
# the file removed at exit), an abstract name with the unnamed peer shown as "unix:", a stale
# socket file refused and left, a missing path, bad unix: addresses.
test_tfcat_unix_socket_both_ways() {
  local path="$tmp/u.sock"
  for mode in "" --sync; do
    serve s $mode -v --echo -l "unix:$path" || return 1
    assert_eq "$ADDR" "unix:$path" "(bound address, $mode server)" || return 1
    [ -S "$path" ] || { say "no socket file at $path"; return 1; }
    seq 1 50 >"$tmp/in"
    tfcat --recv "unix:$path" <"$tmp/in" >"$tmp/got" || { say "async client ($mode server)"; return 1; }
    cmp "$tmp/in" "$tmp/got" || return 1
    tfcat --sync --recv "unix:$path" <"$tmp/in" >"$tmp/got" || { say "sync client ($mode)"; return 1; }
    cmp "$tmp/in" "$tmp/got" || return 1
    wait_for "$tmp/s.err" '^tfcat: unix:: closed after 50 messages$' || return 1
    stop "$SRV" || return 1
    [ ! -e "$path" ] || { say "$path left behind ($mode server)"; return 1; }
  done
  local abs="unix:@tfcat-test-$$"
  serve a -v -l "$abs" || return 1
  assert_eq "$ADDR" "$abs" "(abstract)" || return 1
  echo over-abstract | tfcat -v "$abs" 2>"$tmp/c.err" || return 1
  assert_grep "$tmp/c.err" "^tfcat: $abs: connected$" || return 1
  wait_for "$tmp/a.out" '^over-abstract$' || return 1
  assert_grep "$tmp/a.err" '^tfcat: unix:: accepted$' || return 1
  stop "$SRV" || return 1
  # A stale socket file: refused with the reason, left where it was.
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$path" || return 1
  tfcat -l "unix:$path" 2>"$tmp/l.err"
  assert_eq "$?" 1 "(stale socket file)" || return 1
  assert_grep "$tmp/l.err" "unix:$path: .*a stale socket file is there" || return 1
  [ -S "$path" ] || { say "the stale file was removed"; return 1; }
  rm -f "$path"
  # Nobody there: a runtime failure naming the address; bad addresses: usage errors.
  tfcat --data x "unix:$path" 2>"$tmp/c.err"
  assert_eq "$?" 1 "(missing path)" || return 1
  assert_grep "$tmp/c.err" "^tfcat: unix:$path: connect: no such file or directory$" || return 1
  tfcat --data x "unix:" 2>"$tmp/c.err"
  assert_eq "$?" 2 "(unix:)" || return 1
  assert_grep "$tmp/c.err" 'bad address "unix:": empty path' || return 1
  tfcat -l "unix:@" 2>"$tmp/c.err"
  assert_eq "$?" 2 "(unix:@)" || return 1
  assert_grep "$tmp/c.err" 'empty abstract name' || return 1
}

# -v: one statistics line per client when it ends (3 messages of 9 bytes each way with --echo
# and --recv); --stats 1: a JSON line of the server's counters every second and at exit, with a
# wrong-magic client counted under its reason. Async and --sync servers.
test_tfcat_verbose_stats_and_json() {
  need_python || return 1
  local mode
  for mode in "" --sync; do
    serve s $mode -v --echo --stats 1 -l 127.0.0.1:0 || return 1
    printf 'aaaaaaaaa\nbbbbbbbbb\nccccccccc\n' | tfcat --recv "$ADDR" >"$tmp/c.out" || return 1
    assert_lines "$tmp/c.out" 3 || return 1
    wait_for "$tmp/s.err" ': stats msgs_recv=' || return 1
    assert_grep "$tmp/s.err" \
      '^tfcat: 127\.0\.0\.1:[0-9]*: stats msgs_recv=3 bytes_recv=27 msgs_sent=3 bytes_sent=27 queued=0 queued_bytes=0 pauses=0 paused_ms=0 end=CLOSED$' || return 1
    timeout -k 5 "$LIMIT" "$PY" "$tmp/peer.py" storm "$PORT" 1 magic || return 1
    wait_for "$tmp/s.err" '"rej_bad_magic":1' || return 1
    stop "$SRV" || return 1
    local last; last=$(grep '^{' "$tmp/s.err" | tail -1)
    assert_eq "$last" '{"accepted":1,"rejected":1,"rej_bad_magic":1,"rej_timeout":0,"rej_closed":0,"rej_busy":0,"rej_io":0,"rej_other":0,"active":0,"handshaking":0,"accept_rests":0}' "(last --stats line, mode [$mode])" || return 1
  done
  echo x | tfcat --stats 1 "$ADDR" 2>"$tmp/c.err"
  assert_eq "$?" 2 "(--stats on a client)" || return 1
  "$TFCAT" --stats 0 -l 127.0.0.1:0 2>"$tmp/c.err"
  assert_eq "$?" 2 "(--stats 0)" || return 1
}

# ---------------------------------------------------------------- runner

# ---------------------------------------------------------------- TLS (--tls-*, SPEC 9.11)

# Certificates made here with the openssl CLI (never committed): a CA, a server for localhost
# and 127.0.0.1, a client, an expired client, and a client of another CA.
tls_certs() {
  [ -f "$tmp/tls/ca.pem" ] && return 0
  command -v openssl >/dev/null || { say "no openssl CLI (scripts/deps.sh check installs it)"; return 1; }
  mkdir -p "$tmp/tls"
  (
    cd "$tmp/tls" || exit 1
    for ca in ca ca2; do
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $ca.key \
        -out $ca.pem -subj "/CN=$ca" -days 2 >/dev/null 2>&1 || exit 1
    done
    mk() { # NAME CA SAN DAYS
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
        -out "$1.csr" -subj "/CN=$1" >/dev/null 2>&1 &&
      printf 'subjectAltName=%s\n' "$3" >"$1.ext" &&
      openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days "$4" \
        -extfile "$1.ext" -out "$1.pem" >/dev/null 2>&1
    }
    mk server ca "DNS:localhost,IP:127.0.0.1" 2 && mk client ca "DNS:client.example" 2 &&
    mk expired ca "DNS:client.example" -1 && mk stranger ca2 "DNS:client.example" 2
  ) || { say "making the certificates failed"; return 1; }
}
tls_srv() { echo --tls-cert "$tmp/tls/server.pem" --tls-key "$tmp/tls/server.key" --tls-ca "$tmp/tls/ca.pem"; }
tls_cli() { # NAME (client, expired, stranger; "" none) [SERVER-NAME]
  [ -n "$1" ] && echo --tls-cert "$tmp/tls/$1.pem" --tls-key "$tmp/tls/$1.key"
  echo --tls-ca "$tmp/tls/ca.pem" --tls-name "${2:-localhost}"
}

test_tfcat_tls_mutual_echo_async_and_sync() {
  tls_certs || return 1
  for mode in "" --sync; do
    serve s $mode --echo $(tls_srv) -l 127.0.0.1:0 || return 1
    seq 1 100 >"$tmp/in"
    tfcat --recv $(tls_cli client) "$ADDR" <"$tmp/in" >"$tmp/got" || { say "async client ($mode server)"; return 1; }
    cmp "$tmp/in" "$tmp/got" || return 1
    { printf '\0\20\0\0'; head -c 1048576 /dev/urandom; } >"$tmp/big" # one 1 MiB frame
    tfcat --sync --recv --raw $(tls_cli client 127.0.0.1) "$ADDR" <"$tmp/big" >"$tmp/got" ||
      { say "sync client ($mode server)"; return 1; }
    cmp "$tmp/big" "$tmp/got" || return 1
    stop "$SRV" || return 1
    assert_lines "$tmp/s.err" 1 || return 1
    # TLS without the magic (--no-handshake): the TLS handshake alone
    serve s $mode --no-handshake --echo $(tls_srv) -l 127.0.0.1:0 || return 1
    tfcat --recv --no-handshake $(tls_cli client) "$ADDR" <"$tmp/in" >"$tmp/got" || return 1
    cmp "$tmp/in" "$tmp/got" || return 1
    stop "$SRV" || return 1
  done
}

# Each refused client with its reason on the server (and a failing client), the server going
# on; a client refuses a server without the expected name; a plaintext client is dropped at the
# handshake deadline.
test_tfcat_tls_rejections() {
  tls_certs || return 1
  for mode in "" --sync; do
    serve s $mode --timeout 500 $(tls_srv) -l 127.0.0.1:0 || return 1
    echo x | tfcat $(tls_cli "") "$ADDR" 2>"$tmp/c.err" && { say "a client without a certificate got in"; return 1; }
    wait_for "$tmp/s.err" 'handshake: TLS: peer did not return a certificate' || return 1
    assert_grep "$tmp/c.err" 'certificate required' || return 1
    echo x | tfcat $(tls_cli expired) "$ADDR" 2>"$tmp/c.err" && { say "an expired client got in"; return 1; }
    wait_for "$tmp/s.err" 'handshake: certificate verification failed: certificate has expired' || return 1
    echo x | tfcat $(tls_cli stranger) "$ADDR" 2>"$tmp/c.err" && { say "a client of another CA got in"; return 1; }
    wait_for "$tmp/s.err" 'handshake: certificate verification failed: unable to get local issuer certificate' || return 1
    echo x | tfcat $(tls_cli client wrong.example) "$ADDR" 2>"$tmp/c.err" && { say "a wrong server name was accepted"; return 1; }
    assert_grep "$tmp/c.err" 'handshake: certificate verification failed: hostname mismatch' || return 1
    echo x | tfcat --timeout 5000 "$ADDR" 2>"$tmp/c.err" && { say "a plaintext client got in"; return 1; }
    wait_for "$tmp/s.err" 'handshake: timed out' || return 1
    echo good | tfcat $(tls_cli client) "$ADDR" 2>"$tmp/c.err" || { show "$tmp/c.err"; return 1; }
    wait_for "$tmp/s.out" '^good$' || return 1
    stop "$SRV" || return 1
  done
}

# openssl s_client (with a client certificate, -verify_return_error) talks to a tfcat server;
# a tfcat client talks to openssl s_server (-Verify: it requires the client's certificate).
test_tfcat_tls_openssl_peers() {
  tls_certs || return 1
  [ -n "$PY" ] || { say "python3 is needed for a free port"; return 1; }
  serve s $(tls_srv) -l 127.0.0.1:0 || return 1
  printf 'UNIF\0\0\0\5hello' | timeout -k 5 "$LIMIT" openssl s_client -connect "$ADDR" -quiet -no_ign_eof \
    -verify_return_error -CAfile "$tmp/tls/ca.pem" -cert "$tmp/tls/client.pem" \
    -key "$tmp/tls/client.key" -verify_hostname localhost >"$tmp/sc.out" 2>"$tmp/sc.err"
  wait_for "$tmp/s.out" '^hello$' || { show "$tmp/sc.err"; return 1; }
  stop "$SRV" || return 1
  local port
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # s_server's stdin (the server's magic) is read once the client is in; its end (once the
  # client's frame is out) ends the connection
  (printf 'UNIF'; i=0; while [ $i -lt 3000 ] && [ "$(stat -c %s "$tmp/ss.out" 2>/dev/null || echo 0)" -lt 13 ]; do
     sleep 0.02; i=$((i + 1)); done) | timeout -k 5 "$LIMIT" openssl s_server -accept "127.0.0.1:$port" \
    -naccept 1 -quiet -cert "$tmp/tls/server.pem" -key "$tmp/tls/server.key" \
    -CAfile "$tmp/tls/ca.pem" -Verify 1 -verify_return_error >"$tmp/ss.out" 2>"$tmp/ss.err" &
  bg+=("$!")
  local i=0
  until tfcat --data hello $(tls_cli client) "127.0.0.1:$port" 2>"$tmp/c.err"; do
    i=$((i + 1)) # s_server may not be listening yet: connect is refused, try again
    [ $i -lt 250 ] && grep -q 'refused' "$tmp/c.err" || { show "$tmp/c.err"; show "$tmp/ss.err"; return 1; }
    sleep 0.02
  done
  wait_for "$tmp/ss.out" 'hello' || return 1
  printf 'UNIF\0\0\0\5hello' >"$tmp/want"
  head -c 13 "$tmp/ss.out" | cmp - "$tmp/want" || { show "$tmp/ss.out"; return 1; }
}

tests=$(declare -F | sed -n 's/^declare -f \(test_tfcat_.*\)/\1/p')
filter=${TF_TEST_FILTER:-*}
passed=0 failed=0 failed_names=()
echo "[==========] tfcat end to end: $TFCAT"
for t in $tests; do
  # shellcheck disable=SC2053
  [[ $t == $filter ]] || continue
  echo "[ RUN      ] $t"
  bg=()
  rm -f "$tmp"/*.out "$tmp"/*.err
  t0=$(date +%s%N)
  if $t; then
    echo "[       OK ] $t ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    passed=$((passed + 1))
  else
    echo "[  FAILED  ] $t"
    failed=$((failed + 1))
    failed_names+=("$t")
  fi
  for p in "${bg[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
done
echo "[==========] $((passed + failed)) test(s) run."
echo "[  PASSED  ] $passed test(s)."
if [ $failed -gt 0 ]; then
  echo "[  FAILED  ] $failed test(s), listed below:"
  for t in "${failed_names[@]}"; do echo "[  FAILED  ] $t"; done
  exit 1
fi
exit 0
