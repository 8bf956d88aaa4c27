#!/usr/bin/env python3
"""mutants.py [ID...] -- `make mutants-proof`: put known bugs back into proto/ and require the
proof to catch each one.

Each mutant below is applied to a scratch copy of proto/ and include/ under build/mutants/<id>/
(exact text replacements, each of which must match exactly once), and WP runs there on the
changed functions with the same options and limits as `make verify` (verify/wp.sh). A mutant is
KILLED if at least one goal is left unproved or a smoke test fails; a mutant whose changed
functions still prove completely SURVIVED, and any survivor (or a mutant that no longer applies,
or a frama-c error) fails the target. The table goes to stdout and build/mutants/table.md.
WP's cache (build/wp/cache, keyed by the goal's text, so a changed goal is always re-proved)
makes the unchanged goals of each function cheap after the first run.
"""
import json
import os
import re
import signal
import shutil
import subprocess
import sys
import time

# (id, file, functions, [(old, new), ...], what the bug is)
MUTANTS = [
    ("tx-iov-swapped", "proto/tx.c", "tf_tx_try",
     [("        size_t cnt = tf_tx_next(tx, iov);\n",
       "        size_t cnt = tf_tx_next(tx, iov);\n"
       "        if (cnt == 2) { tf_iov t = iov[0]; iov[0] = iov[1]; iov[1] = t; }\n")],
     "tf_tx_try writes the payload before the header (iov pieces swapped)"),
    ("tx-failed-not-sticky", "proto/tx.c", "tf_tx_try",
     [("    if (tx->state != TF__TX_SENDING)\n"
       "        return tx->state == TF__TX_IDLE ? TF_DONE : TF_ERROR;\n",
       "    if (tx->state != TF__TX_SENDING) {\n"
       "        tx->state = TF__TX_IDLE; tx->err = TF_OK; tx->os_err = 0;\n"
       "        return TF_DONE;\n    }\n")],
     "tf_tx_try on a failed sender resets it to idle and answers DONE"),
    ("hs-sends-peer-bytes", "proto/hs.c", "hs_write_once",
     [("    size_t want = tf_hs_out(hs, &out);\n",
       "    size_t want = tf_hs_out(hs, &out);\n    out = hs->in + hs->sent;\n")],
     "the handshake sends the peer's bytes instead of our magic"),
    ("rx-closed-truncated-swapped", "proto/rx.c", "tf_rx_try",
     [("rx->got == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED;",
       "rx->got == 0 ? TF_ERR_TRUNCATED : TF_ERR_CLOSED;")],
     "CLOSED and TRUNCATED swapped in the receive path"),
    ("feed-wrong-input-bytes", "proto/rx.c", "tf_rx_feed",
     [("    copy(dst, in, n);\n", "    copy(dst, in + (len - n), n);\n")],
     "tf_rx_feed copies other input bytes than the first unused ones"),
    ("be32-little-endian", "include/tcpframe/proto.h", "tf_be32_put",
     [("    out[0] = (uint8_t)(v / 16777216u);\n", "    out[3] = (uint8_t)(v / 16777216u);\n"),
      ("    out[3] = (uint8_t)(v % 256u);\n", "    out[0] = (uint8_t)(v % 256u);\n")],
     "length prefix written little-endian (byte order)"),
    ("rx-advance-bound+1", "proto/rx.c", "tf_rx_advance",
     [("    if (n > want)\n        return rx_fail(rx, TF_ERR_INVALID_ARGUMENT, 0);",
       "    if (n > want + 1)\n        return rx_fail(rx, TF_ERR_INVALID_ARGUMENT, 0);")],
     "tf_rx_advance accepts one byte more than it asked for (off by one)"),
    ("tx-advance-bound+1", "proto/tx.c", "tf_tx_advance",
     [("    if (n > tf_tx_pending(tx))", "    if (n > tf_tx_pending(tx) + 1)")],
     "tf_tx_advance accepts one byte more than is left (off by one)"),
    ("hs-sent-bound+1", "proto/hs.c", "tf_hs_sent",
     [("    if (n > 4u - hs->sent)", "    if (n > 5u - hs->sent)")],
     "tf_hs_sent accepts one byte more than offered (off by one)"),
    ("hs-received-bound+1", "proto/hs.c", "tf_hs_received",
     [("    if (n > 4u - hs->got)", "    if (n > 5u - hs->got)")],
     "tf_hs_received accepts one byte more than asked (off by one)"),
    ("tx-begin-max+1", "proto/tx.c", "tf_tx_begin",
     [("    if (len > tx->max_len)", "    if (len > (size_t)tx->max_len + 1)")],
     "tf_tx_begin accepts a payload of max_len + 1 (off by one)"),
    ("rx-next-payload+1", "proto/rx.c", "tf_rx_next",
     [("        return rx->len - rx->got;", "        return rx->len - rx->got + 1;")],
     "tf_rx_next asks for one payload byte more than the message has (off by one)"),
    ("set-target-cap-1", "proto/rx.c", "tf_rx_set_target",
     [("    if (cap < rx->len) {", "    if (cap + 1 < rx->len) {")],
     "tf_rx_set_target accepts a target one byte too small (off by one)"),
    ("frame-split-short-1", "proto/frame.c", "tf_frame_split",
     [("    if (len < TF_HDR_LEN)", "    if (len < TF_HDR_LEN - 1)")],
     "tf_frame_split decodes a prefix from 3 bytes (off by one)"),
    ("rx-signed-length", "proto/rx.c", "tf_rx_advance",
     [("        if (rx->len > rx->max_len)",
       "        if ((int32_t)rx->len > (int32_t)rx->max_len)")],
     "signed comparison of the length with max_len"),
    ("rx-check-after-target", "proto/rx.c", "tf_rx_advance,tf_rx_set_target",
     [("        if (rx->len > rx->max_len)\n            return rx_fail(rx, TF_ERR_TOO_LARGE, 0);\n", ""),
      ("    if (cap < rx->len) {",
       "    if (rx->len > rx->max_len) {\n        rx_fail(rx, TF_ERR_TOO_LARGE, 0);\n"
       "        return rx->err;\n    }\n    if (cap < rx->len) {")],
     "the max_len check moved after the target is asked for"),
    ("tx-done-early", "proto/tx.c", "tf_tx_advance",
     [("    if (tx->done < TF_HDR_LEN + tx->len)", "    if (tx->done + 1 < TF_HDR_LEN + tx->len)")],
     "tf_tx_advance answers DONE one byte early"),
    ("rx-done-early", "proto/rx.c", "tf_rx_advance",
     [("rx->state == TF__RX_BODY && rx->got == rx->len)",
       "rx->state == TF__RX_BODY && rx->got + 1 >= rx->len)")],
     "tf_rx_advance answers DONE one byte early"),
    ("feed-used-wrong", "proto/rx.c", "tf_rx_feed",
     [("    *used = n;\n", "    *used = want;\n")],
     "tf_rx_feed reports what was asked for, not what it consumed, as *used"),
    ("hs-accepts-wrong-byte", "proto/hs.c", "tf_hs_received",
     [("        if (hs->in[i] != hs->out[i])", "        if (i > 0 && hs->in[i] != hs->out[i])")],
     "the handshake accepts a wrong first byte"),
    ("tx-intr-off-by-one", "proto/tx.c", "tf_tx_try",
     [("++intr >= TF_MAX_INTR)", "++intr > TF_MAX_INTR)")],
     "tf_tx_try retries one interrupted answer too many"),
    ("rx-intr-off-by-one", "proto/rx.c", "tf_rx_try",
     [("++intr >= TF_MAX_INTR)", "++intr > TF_MAX_INTR)")],
     "tf_rx_try retries one interrupted answer too many"),
    ("tx-os-err-dropped", "proto/tx.c", "tf_tx_try",
     [("return tx_fail(tx, err, os_err);", "return tx_fail(tx, err, 0);")],
     "tf_tx_try loses the OS error number of an IO failure"),
    ("rx-eof-as-io", "proto/rx.c", "tf_rx_try",
     [("tf__io_answer(r, eof, &err)", "tf__io_answer(r, TF_ERR_IO, &err)")],
     "tf_rx_try reports end of stream as IO"),
    ("hs-wants-swapped", "proto/hs.c", "tf_hs_wants",
     [("    if (hs->got < 4u)\n        w += TF_WANT_READ;", "    if (hs->sent < 4u)\n        w += TF_WANT_READ;"),
      ("    if (hs->sent < 4u)\n        w += TF_WANT_WRITE;", "    if (hs->got < 4u)\n        w += TF_WANT_WRITE;")],
     "tf_hs_wants swaps READ and WRITE"),
    ("rx-span-cap+1", "proto/rx.c", "rx_obtain_target",
     [("tf_rx_set_target(rx, sink->buf, sink->cap)", "tf_rx_set_target(rx, sink->buf, sink->cap + 1)")],
     "tf_rx_try claims one byte more of the caller's span than it has"),
    # Caught only by the read side of the ghost wire (what tf_rx_try / tf_hs_try read is where
    # they say it is): the older contracts speak of states, lengths and pointers, not bytes.
    ("rx-read-one-off", "proto/rx.c", "rx_read_step",
     [("    *r = io->read(io->ctx, dst, want, os_err);\n",
       "    *r = io->read(io->ctx, dst + (want > 1), want - (want > 1), os_err);\n")],
     "tf_rx_try stores the bytes it reads one position off (prefix and payload)"),
    ("rx-payload-at-start", "proto/rx.c", "rx_read_step",
     [("    *r = io->read(io->ctx, dst, want, os_err);\n",
       "    *r = io->read(io->ctx, rx->state == TF__RX_BODY ? rx->target : dst, want, os_err);\n")],
     "tf_rx_try reads every piece of a payload into the start of the target"),
    ("hs-checks-stale-byte", "proto/hs.c", "hs_read_once",
     [("    r = io->read(io->ctx, in, want, &os_err);\n",
       "    r = io->read(io->ctx, in + (want > 1), want - (want > 1), &os_err);\n")],
     "the handshake stores the peer's bytes one position off and checks a stale byte"),
]


# A goal verdict line of WP's log that is not a proof: the mutant is caught.
BAD = re.compile(r"Goal (\S+) : (Step limit|Timeout|Unknown|Failed|Invalid)|\[Failed\] Smoke-test (\S+)")


# Where each bug should be caught (-wp-prop label or -wp-bhv behavior): only a shortcut.
HINTS = {
    "tx-iov-swapped": ["-wp-prop", "wire"],
    "tx-failed-not-sticky": ["-wp-bhv", "failed"],
    "hs-sends-peer-bytes": ["-wp-prop", "wire"],
    "rx-closed-truncated-swapped": ["-wp-prop", "reason"],
    "feed-wrong-input-bytes": ["-wp-prop", "stored"],
    "be32-little-endian": ["-wp-prop", "be32"],
    "tx-begin-max+1": ["-wp-bhv", "too_large,start"],
    "rx-next-payload+1": ["-wp-prop", "count"],
    "set-target-cap-1": ["-wp-bhv", "too_small,accepted"],
    "rx-check-after-target": ["-wp-bhv", "prefix"],
    "tx-done-early": ["-wp-bhv", "progress"],
    "rx-done-early": ["-wp-bhv", "payload"],
    "feed-used-wrong": ["-wp-prop", "used,bound"],
    "hs-accepts-wrong-byte": ["-wp-prop", "bad_magic"],
    "tx-os-err-dropped": ["-wp-prop", "reason"],
    "rx-eof-as-io": ["-wp-prop", "reason"],
    "hs-wants-swapped": ["-wp-prop", "bits"],
    "rx-read-one-off": ["-wp-prop", "read"],
    "rx-payload-at-start": ["-wp-prop", "read"],
    "hs-checks-stale-byte": ["-wp-prop", "peer"],
}


def wp(d, target, args, logname):
    """Run wp.sh in the scratch tree d; stop at the first goal that is not proved (its verdict
    is final: the same steps and timeouts as `make verify`). Returns (failed goal or None,
    report or None, rc)."""
    rep = os.path.join(d, "build", "wp", logname + ".json")
    logf = os.path.join(d, "build", "wp", logname + ".log")
    with open(logf, "w") as log:
        p = subprocess.Popen([os.path.join(d, "verify", "wp.sh"), target, "--"] + args +
                             ["-wp-report-json", rep], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    seen = 0
    while True:
        rc = p.poll()
        text = open(logf).read()
        m = BAD.search(text, seen)
        if m:
            if rc is None:
                os.killpg(p.pid, signal.SIGTERM)  # our own frama-c and its provers
                p.wait()
            return (m.group(1) or m.group(3)), None, 0
        seen = max(0, len(text) - 200)
        if rc is not None:
            break
        time.sleep(2)
    if not os.path.exists(rep):
        return None, None, rc
    return None, json.load(open(rep)), rc


def unproved(r):
    out = []
    for fn, goals in r.get("wp:functions", {}).items():
        for name, res in goals.items():
            m = res.get("wp:main", {}) if not name.startswith("wp:") else None
            if m and m.get("valid", 0) != m.get("total", 0):
                out.append(name)
    return out


def run(mid, path, fns, edits, hint, root, scratch):
    d = os.path.join(scratch, mid)
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("proto", "include", "verify"):
        shutil.copytree(os.path.join(root, sub), os.path.join(d, sub))
    os.makedirs(os.path.join(d, "build", "wp"))
    shutil.copy(os.path.join(root, "build", "wp", "why3.conf"), os.path.join(d, "build", "wp"))
    f = os.path.join(d, path)
    src = open(f).read()
    for old, new in edits:
        if src.count(old) != 1:
            return "NOT APPLIED", f"'{old.strip()[:40]}' matches {src.count(old)} times", 0
        src = src.replace(old, new)
    open(f, "w").write(src)
    target = path if path.startswith("proto/") else "proto/tx.c"
    t0 = time.time()
    # Fast pass: the property the bug should break (if named), without smoke tests. A goal
    # left unproved in a subset is unproved in the whole, so a kill here is a kill. Otherwise
    # the changed functions are proved completely, smoke tests included.
    passes = [("fast", ["-wp-fct", fns, "-wp-no-smoke-tests"] + (hint or []))]
    passes.append(("full", ["-wp-fct", fns]))
    for name, args in passes:
        goal, r, rc = wp(d, target, args, name)
        if goal:
            return "killed", f"{goal} ({name} pass)", time.time() - t0
        if r is None:
            return "ERROR", f"frama-c exited {rc} without a report", time.time() - t0
        bad = unproved(r)
        if bad:
            return "killed", f"{bad[0]} ({name} pass)", time.time() - t0
    return "SURVIVED", "every goal of the changed function(s) proved", time.time() - t0


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    conf = os.path.join(root, "build", "wp", "why3.conf")
    if not os.path.exists(conf):
        os.makedirs(os.path.dirname(conf), exist_ok=True)
        subprocess.call(["why3", "config", "detect", "-C", conf], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    scratch = os.path.join(root, "build", "mutants")
    os.makedirs(scratch, exist_ok=True)
    cache = os.path.join(root, "verify", "cache")  # the committed cache (verify/wp.sh)
    os.makedirs(cache, exist_ok=True)
    os.environ["WP_CACHE_DIR"] = cache
    want = set(sys.argv[1:])
    rows, bad = [], 0
    for mid, path, fns, edits, what in MUTANTS:
        if want and mid not in want:
            continue
        verdict, why, secs = run(mid, path, fns, edits, HINTS.get(mid), root, scratch)
        bad += verdict != "killed"
        rows.append((mid, fns, what, verdict, why, secs))
        print(f"mutants-proof: {mid}: {verdict} ({why}, {secs:.0f}s)", flush=True)
    lines = ["| mutant | function(s) | bug | verdict | evidence | s |", "| --- | --- | --- | --- | --- | --- |"]
    for mid, fns, what, verdict, why, secs in rows:
        lines.append(f"| {mid} | {fns} | {what} | {verdict} | {why} | {secs:.0f} |")
    table = "\n".join(lines)
    open(os.path.join(scratch, "table.md"), "w").write(table + "\n")
    print(table)
    print(f"mutants-proof: {len(rows) - bad} of {len(rows)} killed")
    os.makedirs("build/results", exist_ok=True)
    open("build/results/mutants-proof", "w").write(f"{1 if bad == 0 else 0} {1 if bad else 0}\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
