#!/usr/bin/env bash
# mutants-io.sh -- the io tests must be able to fail. Each mutant puts back one of the seed
# loop's bugs, or a plausible new one (timers, the stop drain, futures and the baton, fdio), in a
# scratch copy of one io/ file, rebuilds one test binary against it and runs the tests meant to
# catch it: every listed test must kill it (a failed assertion, a crash, a sanitizer report or
# the no-progress watchdog). A surviving mutant fails `make check`.
#
# Control run first: the unmodified code, built the same way, must pass every (binary, filter)
# the table uses under the same watchdog and timeout -- so a kill means the mutant, not a test
# that fails anyway (or only under this watchdog).
#
#   scripts/mutants-io.sh [NAME...]     all mutants, or only those named
#
# Writes build/results/mutants-io ("killed survived") and its log beside it, and prints a table
# mutant x killing tests.
#
# To add a mutant, append one entry to |mutants| below:
#   "name#io file#text (must occur exactly once)#replacement#test binary#cmocka filters"
# The text and replacement may span lines (no '#' in them); every filter must kill the mutant.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/results/mutants-io
mkdir -p "$root/build/results"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$out.log"
WATCHDOG=${TF_MUTANT_WATCHDOG:-5} # seconds without progress
LIMIT=${TF_MUTANT_TIMEOUT:-120}    # seconds per test run

clear='    atomic_store_explicit(&evb->pending, false, memory_order_seq_cst);'
mutants=(
  # ---- the seed loop's bugs (issue 4)
  # seed-lost-wakeup: the seed's order (the queue run before pending is cleared), its window
  # widened by a short sleep: without it, whether a waiter's next dispatch falls inside the few
  # instructions between the two depends on the schedule (make check on a loaded machine saw
  # *1m_round_trips miss it once, 6 Dec); with it, every round trip is a chance to lose the wake.
  "seed-lost-wakeup#evbase.c#$clear
    run_queue(evb);#    run_queue(evb);
    usleep(20);
$clear#test_evbase#*1m_round_trips *two_threads"
  "seed-late-unregister#evbase.c#    if (ticket < s->ticket)#    if (0 && ticket < s->ticket)#test_evbase#*register_storm*"
  "stale-event#evbase.c#    if (!s->active || s->gen != gen)#    if (!s->active && gen == gen)#test_evbase#*stale_event*"
  # ---- timers
  "timer-deadline-half#evbase.c#    t->deadline = now + delta;#    t->deadline = now + delta / 2;#test_evbase#*timers_fire_in_order *timers_many_in_deadline_order"
  "timer-cancelled-still-fires#evbase.c#        if (timer_cas(t, T_FIRED))
            t->cb(evb, t->arg);#        timer_cas(t, T_FIRED);
        t->cb(evb, t->arg);#test_evbase#*timer_cancel_from_any_thread"
  "timer-cancel-slot-kept#evbase.c#    if (enqueue(evb, timer_remove_task, t) != TF_OK)
        timer_unref(t);#    timer_unref(t);#test_evbase#*timer_cancel_from_any_thread"
  "timer-pending-at-stop-fires#evbase.c#        timer_cas(t, T_CANCELLED);
        timer_unref(t);
    }
    tf__future_flush_wakes(); /* what the drain#        if (timer_cas(t, T_FIRED))
            t->cb(evb, t->arg);
        timer_unref(t);
    }
    tf__future_flush_wakes(); /* what the drain#test_evbase#*timers_pending_at_stop_never_fire *stop_from_fd_and_timer_callbacks"
  # ---- stop and its drain
  "stop-skips-drain#evbase.c#        if (empty)
            break;#        if (1)
            break;#test_evbase#*stop_drains_queued_work *stop_from_fd_and_timer_callbacks"
  "drain-accepts-dispatch#evbase.c#    if (state_of(evb) >= ST_STOPPING)
        rc = TF_ERR_SHUTDOWN;
    else if (!vec_push#    if (state_of(evb) > ST_STOPPING)
        rc = TF_ERR_SHUTDOWN;
    else if (!vec_push#test_evbase#*stop_drain_refuses_added_work *stop_drains_queued_work *stop_from_fd_and_timer_callbacks"
  "drain-accepts-timer#evbase.c#        if (state_of(evb) >= ST_STOPPING)
            rc = TF_ERR_SHUTDOWN;
        else if (!heap_push#        if (0)
            rc = TF_ERR_SHUTDOWN;
        else if (!heap_push#test_evbase#*stop_drain_refuses_added_work"
  "drain-accepts-fd#evbase.c#        if (cb && state_of(evb) >= ST_STOPPING)#        if (0 && cb)#test_evbase#*stop_drain_refuses_added_work"
  # ---- futures and the baton
  "then-not-run-when-ready#future.c#    cb(f, arg);
    return TF_OK;
}#    if (0)
        cb(f, arg);
    return TF_OK;
}#test_future#*new_ready_is_immediate *every_order_single_thread"
  "broken-promise-ok#future.c#complete(s, TF_ERR_CANCELLED, 0, NULL, NULL, false);#complete(s, TF_OK, 0, NULL, NULL, false);#test_future#*broken_promise_is_cancelled"
  "second-set-accepted#future.c#    if (atomic_exchange_explicit(&s->claimed, true, memory_order_acq_rel))
        return TF_ERR_BAD_STATE;
    complete#    (void)atomic_exchange_explicit(&s->claimed, true, memory_order_acq_rel);
    complete#test_future#*get_takes_ownership"
  "future-waiter-not-woken#future.c#    if (old & F_WAITERS)
        wake_waiters(s, dtor, defer);#    if (0)
        wake_waiters(s, dtor, defer);#test_future#*wait_asleep_is_woken"
  "baton-post-no-wake#future.c#    if (atomic_exchange_explicit(b, 1u, memory_order_acq_rel) == 2u)#    if (atomic_exchange_explicit(b, 1u, memory_order_acq_rel) == 3u)#test_evbase#*1m_round_trips"
  "loop-wake-never-flushed#evbase.c#        tf__future_flush_wakes(); /* the futures this iteration completed, woken together */#        (void)0;#test_future#*loop_completion_wakes_sleeper"
  "drain-wake-never-flushed#evbase.c#    tf__future_flush_wakes(); /* what the drain and the stop hooks completed */#    (void)0;#test_future#*loop_completion_wakes_sleeper"
  "unread-owned-leaks#future.c#    if (s->owned && s->dtor && !atomic_load_explicit(&s->taken, memory_order_relaxed))#    if (0)#test_future#*dropped_unread_frees_owned"
  # ---- fdio
  "fdio-eintr-is-fail#fdio.c#    if (e == EINTR)
        return TF_IO_INTR;#    (void)0;#test_fdio#*eintr_maps_to_intr"
  "fdio-eagain-is-fail#fdio.c#    if (e == EAGAIN)
        return TF_IO_AGAIN;#    (void)0;#test_fdio#*read_maps_bytes_eof_again_errno *full_socket_buffer_again"
  "fdio-sigpipe#fdio.c#n = tf__sys_sendmsg(f->wfd, &mh, MSG_NOSIGNAL);#n = tf__sys_sendmsg(f->wfd, &mh, 0);#test_fdio#*epipe_no_sigpipe"
  "fdio-no-pipe-fallback#fdio.c#if (n < 0 && errno == ENOTSOCK) {#if (0) {#test_fdio#*pipe_enotsock_fallback *messages_pipes_span"
  "fd-wait-eintr-fails#fdio.c#        if (errno != EINTR)
            return TF_ERR_IO;#        return TF_ERR_IO;#test_fdio#*wait_retries_eintr"
  "fd-wait-nval-ok#fdio.c#if (p.revents & POLLNVAL) {#if (0) {#test_fdio#*wait_bad_fd"
  # ---- the async connection (issue 10)
  # uniflow's async hang: the unregister of a finished operation is deferred and lands after the
  # next operation's register of the same fd, which then never hears from the socket again (here
  # the change to the errors-only watch an idle connection keeps is the one deferred).
  "uniflow-late-unregister#async_conn.c#static void set_interest(tf_async_conn *c, unsigned want)
{
    if (c->fd < 0 || want == c->interest)
        return;
    tf_err rc = want ? tf_evb_register_fd(c->evb, c->fd, want & ~WATCH_ERRORS, on_fd, c)
                     : tf_evb_unregister_fd(c->evb, c->fd);#static void late_errors_only(tf_evb *evb, void *arg)
{
    tf_evb_register_fd(evb, ((tf_async_conn *)arg)->fd, 0, on_fd, arg);
}

static void set_interest(tf_async_conn *c, unsigned want)
{
    if (c->fd < 0 || want == c->interest)
        return;
    tf_err rc = want == WATCH_ERRORS ? tf_evb_timer_after(c->evb, 1, late_errors_only, c, NULL)
                : want ? tf_evb_register_fd(c->evb, c->fd, want & ~WATCH_ERRORS, on_fd, c)
                     : tf_evb_unregister_fd(c->evb, c->fd);#test_async_conn#*never_hang_round_trips"
  "async-poison-keeps-receives#async_conn.c#    while ((op = queue_pop(&c->rq_head, &c->rq_tail)) != NULL)
        op_done(c, op, err, os_err, NULL, 0);#    (void)0;#test_async_conn#*peer_closed_between_and_inside"
  "async-timeout-mid-frame-usable#async_conn.c#    if (started) {
        tf__async_fail(c, TF_ERR_TIMEOUT, 0);#    if (0) {
        tf__async_fail(c, TF_ERR_TIMEOUT, 0);#test_async_conn#*recv_timeout_mid_frame_poisons"
  "async-eof-always-closed#async_conn.c#    tf_err why = clean ? TF_ERR_CLOSED : TF_ERR_TRUNCATED;#    tf_err why = TF_ERR_CLOSED;
    clean = true;#test_async_conn#*peer_closed_between_and_inside"
  "server-emfile-spins#async_server.c#    s->resting = true;
    watch(s, false);#    return;#test_async_server#*emfile_no_spin_and_recovers"
  # ---- the async lifecycle (issue 20): one mutant per root cause. "@asan": built with ASan,
  # for bugs whose only symptom is a use-after-free.
  "hook-kept-on-stop-path#async_conn.c#    if (c->started)
        tf__evb_hook_remove(c->evb, &c->hook);#    if (c->started && !tf__evb_stopping(c->evb))
        tf__evb_hook_remove(c->evb, &c->hook);#test_async_edges@asan#*bug1_free_from_shutdown_callback *bug1_stop_then_free_in_task"
  "server-hook-kept-on-stop#async_server.c#    tf__evb_hook_remove(s->evb, &s->hook);#    if (!tf__evb_stopping(s->evb))
        tf__evb_hook_remove(s->evb, &s->hook);#test_async_edges@asan#*bug1_stop_then_free_in_task"
  "linger-with-handoffs-pending#async_conn.c#            queue_push(&c->in_head, &c->in_tail, op); /* taken below, on this thread */#            (void)(op->next = c->in_head, c->in_head = op, c->in_tail = c->in_tail ? c->in_tail : op);#test_async_edges#*bug2_close_flushes_send_in_handoff"
  "stream-admitted-beside-recv#async_conn.c#    if (e == TF_OK && cb && (c->stream_on || c->rq_ops > 0))#    if (e == TF_OK && cb && c->stream_on)#test_async_edges#*bug4_stream_and_recv_race"
  "busy-without-writable-mark#async_conn.c#            c->wr_wanted = true;
            return TF_ERR_BUSY;#            return TF_ERR_BUSY;#test_async_edges#*bug5_writable_after_busy_never_lost"
  "scratch-nomem-as-busy#async_conn.c#        if (se == TF_ERR_BUSY) {#        if (se != TF_OK) {#test_async_edges#*bug7_read_buffer_nomem_fails"
  "cross-loop-free-returns-early#async_conn.c#    tf_err rc = tf__evb_teardown_wait(evb, free_task, c); /* also from another loop's thread */
    if (rc == TF_OK)
        return;#    tf_err rc = tf_evb_dispatch_and_wait(evb, free_task, c);
    if (rc == TF_OK)
        return;
    if (rc == TF_ERR_BAD_STATE && tf_evb_dispatch(evb, free_task, c) == TF_OK)
        return;#test_async_edges@asan#*free_from_another_loops_thread"
  "abort-nested-in-callback#async_conn.c#    bool nested = tf_evb_in_loop_thread(c->evb) && c->depth > 0;#    bool nested = false;#test_async_edges#*abort_inside_callback_not_nested"
  "close-fd-kept-after-failure#async_conn.c#    if (c->flushing)
        close_fd(c); /* a close was asked for: the socket goes now, not at free */#    if (0)
        close_fd(c);#test_async_edges#*close_failed_by_reset_releases_fd"
  "settings-nested-in-callback#async_conn.c#    bool nested = local && c->depth > 0;
    tf_async_op *op = tf__alloc(sizeof *op);#    bool nested = false;
    tf_async_op *op = tf__alloc(sizeof *op);#test_async_edges#*settings_inside_callback_not_nested"
  "shutdown-skips-event-wait#async_server.c#    tf__evsink_close(s->sink, !inside);#    tf__evsink_close(s->sink, false);#test_async_multi#*multi_events"
  "client-event-attempt-kept#async_client.c#    unlink_attempt(at);
    atomic_fetch_add_explicit(&cl->refs, 1u, memory_order_relaxed);#    atomic_fetch_add_explicit(&cl->refs, 1u, memory_order_relaxed);#test_obs@asan#*async_client_freed_or_cancelled_in_its_event"
  # ---- the second attack (issue 25 code): one per root cause
  "settings-act-one-by-one#async_conn.c#        run_admitted(c, op);
        tf__perturb();#        run_admitted(c, op);
        c->taking--;
        settle(c);
        c->taking++;
        tf__perturb();#test_async_edges#*attack2_stream_set_and_removed_in_callback *attack2_writable_and_end_set_and_removed_in_callback"
  "nested-abort-keeps-pumping#async_conn.c#        c->abort_pending = true; /* from now on nothing is read, delivered or written */#        (void)0;#test_async_edges#*attack2_abort_in_callback_cancels_queued"
  "idle-socket-unwatched#async_conn.c#    if (!want && (c->phase == PH_OPEN || c->phase == PH_LINGER) && !c->hup_seen)
        want = WATCH_ERRORS;#    if (0)
        want = WATCH_ERRORS;#test_async_edges#*attack2_idle_or_paused_learns_reset"
  "read-watch-dropped-per-receive#async_conn.c#        else if ((c->interest & TF_EVB_READ) && c->drained && !c->mem_wait &&#        else if (0 && c->drained && !c->mem_wait &&#test_async_conn#*read_watch_kept_between_receives"
  "read-watch-kept-for-unwanted-data#async_conn.c#        else if ((c->interest & TF_EVB_READ) && c->drained && !c->mem_wait &&#        else if ((c->interest & TF_EVB_READ) && !c->mem_wait &&#test_async_conn#*read_watch_kept_between_receives"
  "stopped-stream-frame-unread#async_conn.c#           (reader_wanted(c) || frame_open(c))) {#           reader_wanted(c)) {#test_async_edges#*attack2_stream_stopped_mid_frame_finishes_it"
  "stall-relief-off#async_conn.c#    if (relief_wanted(c) && c->out_bytes == c->relief_mark) {#    if (0) {#test_async_peers#*paused_sender_reads_ahead_bounded"
  "stall-relief-unbounded#async_conn.c#    size_t want = (size_t)avail < room ? (size_t)avail : room;#    size_t want = (size_t)avail;#test_async_peers#*paused_sender_reads_ahead_bounded"
  "tls-end-behind-frames-waits#async_conn.c#    c->drained = !tf__xport_in_pending(&c->x);#    c->drained = true;#test_tls#*async_end_behind_frames_reported"
  "sync-relief-off#sync_conn.c#        relief(c); /* RELIEF_MS without the socket taking more */#        (void)0;#test_sync_readahead#*send_relief_reads_ahead_bounded"
  "user-promise-wake-deferred#future.c#    return promise_set(p, err, size, owned, dtor, false);#    return promise_set(p, err, size, owned, dtor, true);#test_async_edges#*attack4_user_promise_set_on_loop_wakes_at_once"
  "stop-blocks-without-flush#evbase.c#    tf__future_flush_wakes(); /* a loop thread about to block (on another loop) wakes its waiters */#    (void)0;#test_async_edges#*attack4_deferred_wake_flushed_before_blocking_stop"
  "sync-relief-per-call#sync_conn.c#    if (!c->tx_stuck_ns)
        c->tx_stuck_ns = t0;#    c->tx_stuck_ns = t0;#test_sync_readahead#*send_relief_across_short_timeouts"
  "client-connect-unreferenced#async_client.c#            rc = tf_evb_dispatch_inline(cl->evb, begin_held, at);#            rc = tf_evb_dispatch_inline(cl->evb, begin, at);
            atomic_fetch_sub_explicit(&cl->refs, 1u, memory_order_relaxed);#test_async_chaos@asan#*client_free_on_loop_before_begin"
  "client-freed-unreferenced#async_client.c#    if (cl->gone) {
        finish(at, TF_ERR_CANCELLED, 0, NULL);#    if (0) {
        finish(at, TF_ERR_CANCELLED, 0, NULL);#test_async_edges@asan#*bug3_client_freed_while_resolving"
  # ---- the sync layer (issue 25)
  "sync-handshakes-one-at-a-time#sync_server.c#        bool listen = n < TF_SYNC_HANDSHAKES && now >= r.pause_until;#        bool listen = n < 1 && now >= r.pause_until;#test_sync_server#*silent_clients_do_not_delay"
  "sync-handshakes-left-open#sync_server.c#    for (size_t i = 0; i < n; i++) {
        tf__xport_close(&s->hs[i].x);
        close(s->hs[i].fd);
    }#    (void)n;#test_sync_server#*shutdown_unblocks_handshake *silent_clients_do_not_delay"
  "sync-closed-poisons#sync_conn.c#    if (e == TF_ERR_CLOSED)
        return closed(c);
    if (e == TF_ERR_TIMEOUT && c->rx_moved == 0)#    if (e == TF_ERR_CLOSED)
        return recv_fail(c, e, 0);
    if (e == TF_ERR_TIMEOUT && c->rx_moved == 0)#test_sync_conn#*half_close_reply_after_closed"
  "sync-alloc-declared-length#sync_conn.c#    size_t cap = len < GROW_MIN || c->rb_len >= len ? len : GROW_MIN, have = 0;#    size_t cap = len, have = 0;#test_sync_conn#*commits_as_bytes_arrive"
  # ---- one server over several loops (issue 25 item 6)
  "multi-first-loop-only#async_server.c#        if (n < fewest && !tf__evb_stopping(b->loops[i])) {#        if (i == 0) {#test_async_multi#*spread_echo *accept_futures *max_conns"
  "multi-verdict-ignores-claim#async_server.c#    if (n->claimed) {
        pthread_mutex_unlock(&s->mu); /* the shutdown frees c and n */
        return;
    }#    if (0) {
    }#test_async_multi@asan#*free_from_any_thread *shutdown_inside_callback"
  "multi-shutdown-frees-on-server-loop#async_server.c#    shut_down(arg);
}#    shut_down(arg);
    free_orphans(arg);
}#test_async_multi#*free_from_any_thread"
  "multi-shutdown-skips-callback-wait#async_server.c#        while (s->in_cb > 0)#        while (0)#test_async_multi#*shutdown_waits_for_callbacks"
)

# Every entry, split: NAME FILE FROM TO BIN FILTER (globals of the current one).
parse() {
  IFS='#' read -r -d '' NAME FILE FROM TO BIN FILTER <<<"$1"
  FILTER=${FILTER%$'\n'}
}

build() { # SRCDIR BIN[@asan|@tsan] OUT
  local san=
  case "$2" in
  *@asan) san="-fsanitize=address,undefined -fno-omit-frame-pointer" ;;
  *@tsan) san="-fsanitize=thread" ;;
  esac
  # tests/tu_tls.c and tls/ need OpenSSL: only the TLS tests (test_tls*) link them
  local tls=() ssl=()
  case "$2" in
  test_tls*) tls=(-Itls tls/*.c) ssl=(-lssl -lcrypto) ;;
  esac
  (cd "$1" && ${CC:-cc} -std=c11 -O1 -g $san -D_GNU_SOURCE -pthread -Iinclude -Iproto -Iio -Itests \
    "tests/${2%@*}.c" $(ls tests/tu_*.c | grep -v '^tests/tu_tls\.c$') ${tls[@]+"${tls[@]}"} \
    ${tls[@]+tests/tu_tls.c} io/*.c proto/*.c -lcmocka ${ssl[@]+"${ssl[@]}"} -o "$3") >>"$out.log" 2>&1
}

secs() { # seconds since START_NS, one decimal
  local ms=$((($(date +%s%N) - $1) / 1000000))
  echo "$((ms / 1000)).$((ms % 1000 / 100))"
}

run_filter() { # BIN FILTER LOG -> exit status
  TF_TEST_WATCHDOG=$WATCHDOG TF_TEST_FILTER="$2" timeout -k 5 "$LIMIT" "$1" >"$3" 2>&1
}

selected() {
  [ $# -eq 0 ] && return 0
  local n
  for n in "${sel[@]}"; do [ "$n" = "$NAME" ] && return 0; done
  return 1
}
sel=("$@")

# ---------------------------------------------------------------- control run
mkdir -p "$work/base"
cp -r "$root/include" "$root/io" "$root/proto" "$root/tests" "$root/tls" "$work/base/"
control_ok=1
declare -A built=() checked=()
for m in "${mutants[@]}"; do
  parse "$m"
  selected "${sel[@]}" || continue
  if [ -z "${built[$BIN]:-}" ]; then
    build "$work/base" "$BIN" "$work/base-$BIN" || { echo "mutants-io: control: $BIN does not build" | tee -a "$out.log"; control_ok=0; }
    built[$BIN]=1
  fi
  for f in $FILTER; do
    [ -n "${checked[$BIN $f]:-}" ] && continue
    checked[$BIN $f]=1
    t0=$(date +%s%N)
    if ! run_filter "$work/base-$BIN" "$f" "$work/control.log"; then
      cat "$work/control.log" >>"$out.log"
      echo "mutants-io: CONTROL FAILED: unmodified $BIN $f fails (see $out.log)" | tee -a "$out.log"
      control_ok=0
    else
      echo "control: $BIN $f passed ($(secs "$t0") s)" >>"$out.log"
    fi
  done
done

# ---------------------------------------------------------------- mutants
killed=0 survived=0
rows=()
for m in "${mutants[@]}"; do
  parse "$m"
  selected "${sel[@]}" || continue
  rm -rf "$work/src" && mkdir -p "$work/src"
  cp -r "$root/include" "$root/io" "$root/proto" "$root/tests" "$root/tls" "$work/src/"
  if ! FROM=$FROM TO=$TO python3 - "$work/src/io/$FILE" <<'EOF'
import os, sys
p = sys.argv[1]
s = open(p).read()
if s.count(os.environ["FROM"]) != 1:
    sys.exit(1)
open(p, "w").write(s.replace(os.environ["FROM"], os.environ["TO"]))
EOF
  then
    echo "mutant $NAME: did not apply (io/$FILE changed?): counted as survived" | tee -a "$out.log"
    rows+=("$NAME|SURVIVED: does not apply")
    survived=$((survived + 1))
    continue
  fi
  if ! build "$work/src" "$BIN" "$work/t"; then
    echo "mutant $NAME: does not build: counted as survived" | tee -a "$out.log"
    rows+=("$NAME|SURVIVED: does not build")
    survived=$((survived + 1))
    continue
  fi
  alive= by=
  for f in $FILTER; do
    t0=$(date +%s%N)
    run_filter "$work/t" "$f" "$work/run.log"
    rc=$?
    dt=$(secs "$t0")
    if [ $rc -eq 0 ]; then
      alive="$alive $f"
    else
      how=$(grep -m1 -oE 'WATCHDOG: no progress|off the main thread|ThreadSanitizer|AddressSanitizer|\[  (FAILED|ERROR)  \]' "$work/run.log")
      [ $rc -eq 124 ] || [ $rc -eq 137 ] && how="timeout ${LIMIT}s"
      [ -z "$how" ] && how="exit $rc"
      echo "mutant $NAME: killed by $BIN $f in $dt s (exit $rc: $how)" >>"$out.log"
      by="$by $f (${dt} s, ${how})"
    fi
  done
  if [ -n "$alive" ]; then
    echo "mutant $NAME: SURVIVED$alive" | tee -a "$out.log"
    rows+=("$NAME|SURVIVED:$alive")
    survived=$((survived + 1))
  else
    rows+=("$NAME|$BIN:$by")
    killed=$((killed + 1))
  fi
done
[ "$control_ok" -eq 1 ] || survived=$((survived + 1))
{
  printf '%-28s  %s\n' "mutant (io)" "killed by (each listed test must kill it)"
  for r in "${rows[@]}"; do printf '%-28s  %s\n' "${r%%|*}" "${r#*|}"; done
} | tee -a "$out.log"
echo "$killed $survived" >"$out"
echo "mutants-io: $killed killed, $survived survived$([ "$control_ok" -eq 1 ] || echo ', CONTROL FAILED')"
[ "$survived" -eq 0 ]
