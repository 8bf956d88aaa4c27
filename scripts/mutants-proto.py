#!/usr/bin/env python3
"""mutants-proto.py -- the proto/ tests and fuzzers must be able to fail (issue 14).

    scripts/mutants-proto.py tests [NAME...]   `make mutants`: unit tests + corpus replay
    scripts/mutants-proto.py fuzz  [NAME...]   `make mutants-fuzz`: libFuzzer, 60 s at most each

Each mutant below puts one plausible bug into a scratch copy of proto/ (or of the inline helpers
of include/tcpframe/proto.h): byte order, an off-by-one in a bound, a signed comparison, a
missing or late max check, an error that is not sticky, DONE early or late, a wrong `used`, a
message left unfilled, a handshake that accepts a wrong byte, interrupts miscounted, ...
The real tree is never touched.

tests: the mutant's library is built once (gcc, ASan + UBSan) and linked into the proto unit
  tests (tests/test_{tx,rx,frame,hs,err}.c) and the corpus replayers (fuzz/replay.c); each must
  be killed by at least one of them (a failed assertion, an oracle failure, a sanitizer report,
  a crash or the timeout). A control run of the unmodified code under the same build must pass.
fuzz: each mutant is linked into its fuzzers (clang -fsanitize=fuzzer,address,undefined) in the
  order the table gives; each runs with a fixed -seed, the committed seeds after an empty
  scratch directory, at most MUTANTS_FUZZ_RUNS executions and MUTANTS_FUZZ_SECONDS (60) s; the
  first fuzzer that reports a finding kills the mutant and the others are skipped.
  MUTANTS_FUZZ_CORPUS=none starts every fuzzer from an empty corpus instead (what the fuzzers
  find by themselves; slower, and then the verdict depends on the machine's speed).

A surviving mutant (or one that no longer applies: the code changed under it) fails the run.
Writes build/results/mutants-<mode> ("killed survived", read by scripts/summary.sh), the log
beside it, and prints a table mutant x {tests | fuzz} with the killers and kill times.

To add a mutant: append a Mutant(name, what, [(file, exact text, replacement), ...], fuzzers)
to MUTANTS. The text must occur exactly once in the file; the fuzzers are tried in order (the
rest follow as a fall-back).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Mutant:
    def __init__(self, name, what, edits, fuzz):
        self.name, self.what, self.edits, self.fuzz = name, what, edits, fuzz


M = Mutant
MUTANTS = [
    # ---------------------------------------------------------------- byte order
    M("be32-get-byte-order", "the prefix decoder swaps the two high bytes",
      [("include/tcpframe/proto.h",
        "return (uint32_t)in[0] * 16777216u + (uint32_t)in[1] * 65536u",
        "return (uint32_t)in[1] * 16777216u + (uint32_t)in[0] * 65536u")],
      ["fuzz_split", "fuzz_rx"]),
    M("be32-put-byte-order", "the prefix encoder swaps the two low bytes",
      [("include/tcpframe/proto.h",
        "out[2] = (uint8_t)(v / 256u % 256u);\n    out[3] = (uint8_t)(v % 256u);",
        "out[3] = (uint8_t)(v / 256u % 256u);\n    out[2] = (uint8_t)(v % 256u);")],
      ["fuzz_roundtrip"]),
    M("be32-put-drops-top-bit", "the prefix encoder loses bit 31",
      [("include/tcpframe/proto.h",
        "out[0] = (uint8_t)(v / 16777216u);",
        "out[0] = (uint8_t)(v / 16777216u % 128u);")],
      ["fuzz_roundtrip"]),
    # ---------------------------------------------------------------- signed comparisons
    M("rx-max-signed", "the receiver compares length and max as int32_t",
      [("proto/rx.c", "if (rx->len > rx->max_len)",
        "if ((int32_t)rx->len > (int32_t)rx->max_len)")],
      ["fuzz_split", "fuzz_rx"]),
    M("split-max-signed", "the splitter compares length and max as int32_t",
      [("proto/frame.c", "if (plen > max_len)", "if ((int32_t)plen > (int32_t)max_len)")],
      ["fuzz_split"]),
    M("tx-max-signed", "the sender compares length and max as int32_t",
      [("proto/tx.c", "if (len > tx->max_len)", "if ((int32_t)len > (int32_t)tx->max_len)")],
      ["fuzz_roundtrip"]),
    # ---------------------------------------------------------------- bounds: off by one
    M("rx-max-off-by-one", "the receiver refuses a length equal to max",
      [("proto/rx.c", "if (rx->len > rx->max_len)", "if (rx->len >= rx->max_len)")],
      ["fuzz_split", "fuzz_rx"]),
    M("rx-max-plus-one", "the receiver accepts max + 1",
      [("proto/rx.c", "if (rx->len > rx->max_len)", "if (rx->len > rx->max_len && rx->len != rx->max_len + 1u)")],
      ["fuzz_split", "fuzz_rx"]),
    M("tx-max-off-by-one", "the sender refuses a length equal to max",
      [("proto/tx.c", "if (len > tx->max_len)", "if (len >= tx->max_len)")],
      ["fuzz_roundtrip"]),
    M("split-max-off-by-one", "the splitter refuses a length equal to max",
      [("proto/frame.c", "if (plen > max_len)", "if (plen >= max_len)")],
      ["fuzz_split"]),
    M("split-whole-frame-again", "the splitter says AGAIN for a frame that ends the buffer",
      [("proto/frame.c", "if (len - TF_HDR_LEN < plen)", "if (len - TF_HDR_LEN <= plen)")],
      ["fuzz_split"]),
    M("split-never-done", "the splitter never says DONE",
      [("proto/frame.c", "*used = TF_HDR_LEN + (size_t)plen;\n    return TF_DONE;",
        "return TF_AGAIN;")],
      ["fuzz_split"]),
    M("split-used-wrong", "the splitter's *used leaves out the prefix",
      [("proto/frame.c", "*used = TF_HDR_LEN + (size_t)plen;", "*used = (size_t)plen;")],
      ["fuzz_split"]),
    M("set-target-cap-off-by-one", "a target one byte short is accepted",
      [("proto/rx.c", "if (cap < rx->len) {", "if (cap + 1u < rx->len) {")],
      ["fuzz_rx", "fuzz_roundtrip"]),
    # ---------------------------------------------------------------- missing / late checks
    M("rx-max-missing", "the receiver never checks max",
      [("proto/rx.c", "if (rx->len > rx->max_len)", "if (0)")],
      ["fuzz_split", "fuzz_rx"]),
    M("rx-max-late", "max is checked only when the target is given (after the allocator ran)",
      [("proto/rx.c", "if (rx->len > rx->max_len)\n            return rx_fail(rx, TF_ERR_TOO_LARGE, 0);\n", ""),
       ("proto/rx.c", "    if (cap < rx->len) {",
        "    if (rx->len > rx->max_len) {\n        rx_fail(rx, TF_ERR_TOO_LARGE, 0);\n"
        "        return rx->err;\n    }\n    if (cap < rx->len) {")],
      ["fuzz_rx", "fuzz_split"]),
    M("tx-max-missing", "the sender never checks max",
      [("proto/tx.c", "if (len > tx->max_len)", "if (0)")],
      ["fuzz_roundtrip"]),
    # ---------------------------------------------------------------- sticky errors
    M("rx-advance-not-sticky", "advance on a failed receiver does not say ERROR",
      [("proto/rx.c", "    if (rx->state == TF__RX_FAILED)\n        return TF_ERROR;\n    size_t want", "    size_t want")],
      ["fuzz_split", "fuzz_rx"]),
    M("rx-abandon-overwrites-reason", "abandon replaces the sticky reason with BAD_STATE",
      [("proto/rx.c", "    if (rx->state != TF__RX_FAILED)\n        rx_fail(rx, TF_ERR_BAD_STATE, 0);",
        "    rx_fail(rx, TF_ERR_BAD_STATE, 0);")],
      ["fuzz_rx", "fuzz_split"]),
    M("tx-begin-not-sticky", "begin on a failed sender says BAD_STATE, not the reason",
      [("proto/tx.c", "    if (tx->state == TF__TX_FAILED)\n        return tx->err;\n    if (tx->state != TF__TX_IDLE)", "    if (tx->state != TF__TX_IDLE)")],
      ["fuzz_roundtrip"]),
    M("hs-received-not-sticky", "a failed handshake accepts more bytes",
      [("proto/hs.c", "tf_step tf_hs_received(tf_hs *hs, size_t n)\n{\n    if (hs->state == TF__HS_FAILED)\n        return TF_ERROR;\n",
        "tf_step tf_hs_received(tf_hs *hs, size_t n)\n{\n")],
      ["fuzz_handshake"]),
    # ---------------------------------------------------------------- DONE early / late
    M("rx-done-early", "the receiver completes a message one byte early",
      [("proto/rx.c", "if (rx->state == TF__RX_BODY && rx->got == rx->len)",
        "if (rx->state == TF__RX_BODY && rx->got + 1u >= rx->len)")],
      ["fuzz_split", "fuzz_rx"]),
    M("rx-empty-not-done", "a zero-length frame does not complete at once (a target is wanted)",
      [("proto/rx.c", "if (rx->len == 0)\n            return rx_done(rx, msg);\n", "")],
      ["fuzz_split", "fuzz_rx"]),
    M("rx-done-late", "the receiver never completes a non-empty message",
      [("proto/rx.c", "if (rx->state == TF__RX_BODY && rx->got == rx->len)",
        "if (rx->state == TF__RX_BODY && rx->got > rx->len)")],
      ["fuzz_split", "fuzz_rx"]),
    M("hs-done-before-peer", "the handshake is DONE once our magic is out, the peer's unread",
      [("proto/hs.c", "    if (hs->sent == 4 && hs->got == 4) {", "    if (hs->sent == 4) {")],
      ["fuzz_handshake"]),
    M("tx-done-early", "the sender says DONE one byte early",
      [("proto/tx.c", "if (tx->done < TF_HDR_LEN + tx->len)", "if (tx->done + 1u < TF_HDR_LEN + tx->len)")],
      ["fuzz_roundtrip"]),
    M("tx-done-late", "the sender is DONE only one byte after the frame",
      [("proto/tx.c", "if (tx->done < TF_HDR_LEN + tx->len)", "if (tx->done <= TF_HDR_LEN + tx->len)")],
      ["fuzz_roundtrip"]),
    M("tx-advance-overrun-accepted", "advance accepts one byte more than is pending",
      [("proto/tx.c", "if (n > tf_tx_pending(tx))", "if (n > tf_tx_pending(tx) + 1u)")],
      ["fuzz_roundtrip"]),
    M("hs-reads-past-magic", "the handshake asks for one byte past the magic",
      [("proto/hs.c", "return hs->state == TF__HS_FAILED ? 0 : 4u - hs->got;",
        "return hs->state == TF__HS_FAILED ? 0 : 5u - hs->got;")],
      ["fuzz_handshake"]),
    # ---------------------------------------------------------------- used / msg
    M("feed-used-short", "tf_rx_feed's *used is one short after a payload piece of 2+ bytes",
      [("proto/rx.c", "*used = n;", "*used = n - (n > 1 && rx->state == TF__RX_BODY);")],
      ["fuzz_split"]),
    M("empty-msg-not-filled", "an empty message leaves the caller's tf_msg as it was",
      [("proto/rx.c", "if (rx->len == 0)\n            return rx_done(rx, msg);",
        "if (rx->len == 0) {\n            rx->state = TF__RX_LEN;\n            return TF_DONE;\n        }")],
      ["fuzz_roundtrip", "fuzz_split", "fuzz_rx"]),
    M("tx-next-payload-offset", "the gather list resends the payload's first byte after a split",
      [("proto/tx.c", "tx->done < TF_HDR_LEN ? 0 : tx->done - TF_HDR_LEN;",
        "tx->done <= TF_HDR_LEN ? 0 : tx->done - TF_HDR_LEN - 1u;")],
      ["fuzz_roundtrip"]),
    M("rx-eof-in-body-closed", "a close right after a prefix is CLOSED, not TRUNCATED",
      [("proto/rx.c", "eof = rx->state == TF__RX_LEN && rx->got == 0 ?", "eof = rx->got == 0 ?")],
      ["fuzz_rx"]),
    # ---------------------------------------------------------------- handshake
    M("hs-accepts-wrong-last-byte", "the handshake does not check the magic's last byte",
      [("proto/hs.c", "if (hs->in[i] != hs->out[i])", "if (hs->in[i] != hs->out[i] && i != 3)")],
      ["fuzz_handshake"]),
    M("hs-wrong-magic", "our magic is 'UNIG' (and the peer's is checked against it)",
      [("proto/hs.c", "hs->out[3] = 0x46;", "hs->out[3] = 0x47;")],
      ["fuzz_handshake"]),
    M("hs-wants-wrong-counter", "tf_hs_wants says READ from our send counter",
      [("proto/hs.c", "    if (hs->got < 4u)\n        w += TF_WANT_READ;",
        "    if (hs->sent < 4u)\n        w += TF_WANT_READ;")],
      ["fuzz_handshake"]),
    # ---------------------------------------------------------------- interrupt counting
    M("rx-intr-one-more", "the receiver retries TF_MAX_INTR + 1 interrupts",
      [("proto/rx.c", "if (r == TF_IO_AGAIN || ++intr >= TF_MAX_INTR)", "if (r == TF_IO_AGAIN || intr++ >= TF_MAX_INTR)")],
      ["fuzz_rx"]),
    M("tx-intr-not-reset", "the sender's interrupt count is not reset by progress",
      [("proto/tx.c", "            intr = 0; /* progress", "            (void)0; /* progress")],
      ["fuzz_roundtrip"]),
    M("hs-intr-read-unbounded", "interrupted handshake reads are not counted",
      [("proto/hs.c", "        else if (r == HS_INTR)\n            intr++;", "")],
      ["fuzz_handshake"]),
    # ---------------------------------------------------------------- error texts
    M("err-name-unknown", "tf_err_name of an unknown value is \"OK\"",
      [("proto/err.c", 'return "UNKNOWN";', 'return "OK";')],
      ["fuzz_err"]),
]

TESTS = ["test_tx", "test_rx", "test_frame", "test_hs", "test_err"]
# fuzz_conn and fuzz_addr drive io/ code (the async connection, the address parser): not
# killers of proto/ mutants, and they do not link against proto/ alone.
IO_FUZZERS = {"fuzz_conn.c", "fuzz_addr.c"}
FUZZERS = sorted(f[:-2] for f in os.listdir(os.path.join(ROOT, "fuzz"))
                 if f.startswith("fuzz_") and f.endswith(".c") and f not in IO_FUZZERS)

GCC_FLAGS = ["-std=c11", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
             "-fno-omit-frame-pointer", "-D_DEFAULT_SOURCE", "-Iinclude", "-Iproto", "-Itests", "-w"]
CLANG_FLAGS = ["-std=c11", "-O2", "-g", "-fsanitize=fuzzer,address,undefined",
               "-fno-sanitize-recover=all", "-Iinclude", "-Iproto", "-w"]
RUN_ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1 abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1")
TEST_TIMEOUT = 120


def log(f, *a):
    s = " ".join(str(x) for x in a)
    print(s, file=f, flush=True)


class Tree:
    """A scratch source tree (include, proto, tests, fuzz) with object caches."""

    def __init__(self, base, mutant=None):
        self.dir = base
        for d in ("include", "proto", "tests", "fuzz"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(base, d), dirs_exist_ok=True)
        self.touched = set()
        if mutant:
            for path, old, new in mutant.edits:
                p = os.path.join(base, path)
                with open(p) as fh:
                    s = fh.read()
                if s.count(old) != 1:
                    raise ValueError(f"{path}: text to mutate found {s.count(old)} times, not once")
                with open(p, "w") as fh:
                    fh.write(s.replace(old, new))
                self.touched.add(path)


def run(cmd, cwd, logf, timeout=None, env=None):
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=env)
        out, rc = p.stdout.decode(errors="replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode(errors="replace") + "\n[timeout]", 124
    return rc, out, time.monotonic() - t0


def compile_objs(tree, cc, flags, srcs, outdir, logf, reuse=None):
    """Compile srcs (paths relative to the tree) to outdir; reuse maps src -> prebuilt object for
    sources the mutant did not change (header mutants rebuild everything)."""
    os.makedirs(outdir, exist_ok=True)
    objs, procs = {}, []
    hdr = any(not t.endswith(".c") for t in tree.touched)
    for s in srcs:
        if reuse and not hdr and s not in tree.touched and s in reuse:
            objs[s] = reuse[s]
            continue
        o = os.path.join(outdir, s.replace("/", "_") + ".o")
        procs.append((s, o, subprocess.Popen([cc] + flags + ["-c", s, "-o", o], cwd=tree.dir,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        objs[s] = o
        if len(procs) >= JOBS:
            _wait(procs, logf)
    _wait(procs, logf)
    return objs


def _wait(procs, logf):
    for s, o, p in procs:
        out = p.communicate()[0].decode(errors="replace")
        if p.returncode != 0:
            log(logf, out)
            raise RuntimeError(f"compile {s} failed")
    procs.clear()


def link(cc, flags, objs, out, cwd, extra, logf):
    rc, o, _ = run([cc] + flags + objs + ["-o", out] + extra, cwd, logf)
    if rc != 0:
        log(logf, o)
        raise RuntimeError(f"link {out} failed")
    return out


JOBS = int(os.environ.get("MUTANTS_JOBS", "2"))
PROTO_C = sorted("proto/" + f for f in os.listdir(os.path.join(ROOT, "proto")) if f.endswith(".c"))


# ---------------------------------------------------------------- tests mode

def tests_build(tree, work, logf, reuse=None):
    srcs = PROTO_C + [f"tests/{t}.c" for t in TESTS] + ["fuzz/replay.c"] + \
        [f"fuzz/{f}.c" for f in FUZZERS]
    objs = compile_objs(tree, "gcc", GCC_FLAGS, srcs, os.path.join(work, "obj"), logf, reuse)
    lib = [objs[s] for s in PROTO_C]
    bins = {}
    for t in TESTS:
        bins[t] = link("gcc", GCC_FLAGS, [objs[f"tests/{t}.c"]] + lib, os.path.join(work, t),
                       tree.dir, ["-lcmocka"], logf)
    for f in FUZZERS:
        bins[f] = link("gcc", GCC_FLAGS, [objs["fuzz/replay.c"], objs[f"fuzz/{f}.c"]] + lib,
                       os.path.join(work, "replay_" + f), tree.dir, [], logf)
    return objs, bins


def tests_run(bins, logf, name):
    """Every test binary and every replayer; returns the list of killers."""
    killers = []
    for k in TESTS + FUZZERS:
        cmd = [bins[k]] if k in TESTS else [bins[k], os.path.join(ROOT, "fuzz", "corpus", k)]
        rc, out, dt = run(cmd, ROOT, logf, TEST_TIMEOUT, RUN_ENV)
        if rc != 0:
            why = first_reason(out)
            killers.append(("replay:" + k[5:] if k in FUZZERS else k, why))
            log(logf, f"--- {name}: {k} exit {rc} ({dt:.1f} s): {why}")
            log(logf, "\n".join(out.splitlines()[-15:]))
    return killers


def first_reason(out):
    for pat in (r"oracle failed: .*", r"\[  FAILED  \] \S+", r"ERROR: \w+Sanitizer: [\w-]+",
                r"runtime error: .*", r"\[timeout\]", r"FAILED.*"):
        m = re.search(pat, out)
        if m:
            return m.group(0)[:100]
    return "exit status"


def mode_tests(mutants, logf, work):
    t0 = time.monotonic()
    base = Tree(os.path.join(work, "base-src"))
    reuse, bins = tests_build(base, os.path.join(work, "base"), logf)
    control = tests_run(bins, logf, "control")
    rows = []
    if control:
        print(f"mutants: CONTROL FAILED: the unmodified code fails {[k for k, _ in control]}")
        return rows, False
    for m in mutants:
        d = os.path.join(work, m.name)
        try:
            tree = Tree(os.path.join(d, "src"), m)
            _, mb = tests_build(tree, d, logf, reuse)
        except (ValueError, RuntimeError) as e:
            rows.append((m, None, str(e)))
            log(logf, f"mutant {m.name}: {e}")
            continue
        killers = tests_run(mb, logf, m.name)
        rows.append((m, killers, None))
        shutil.rmtree(d, ignore_errors=True)
    print(f"mutants: {len(mutants)} mutants, control passed, {time.monotonic() - t0:.0f} s")
    return rows, True


# ---------------------------------------------------------------- fuzz mode

FUZZ_SECONDS = int(os.environ.get("MUTANTS_FUZZ_SECONDS", "60"))
FUZZ_RUNS = int(os.environ.get("MUTANTS_FUZZ_RUNS", "2000000"))
FUZZ_CORPUS = os.environ.get("MUTANTS_FUZZ_CORPUS", "seeds")


def max_len(f):
    try:
        with open(os.path.join(ROOT, "fuzz", f + ".options")) as fh:
            m = re.search(r"max_len\s*=\s*(\d+)", fh.read())
            return m.group(1) if m else None
    except OSError:
        return None


def fuzz_run(binary, f, work, logf, seconds, runs, corpus):
    scratch = os.path.join(work, "scratch-" + f)
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    cmd = [binary, "-seed=1", f"-max_total_time={seconds}", f"-runs={runs}",
           "-dict=" + os.path.join(ROOT, "fuzz", "tcpframe.dict"), "-timeout=10",
           "-rss_limit_mb=2048", "-malloc_limit_mb=256", "-print_final_stats=1",
           "-artifact_prefix=" + os.path.join(work, f + "-")]
    ml = max_len(f)
    if ml:
        cmd.append("-max_len=" + ml)
    cmd.append(scratch)
    if corpus == "seeds":
        cmd.append(os.path.join(ROOT, "fuzz", "corpus", f))
    rc, out, dt = run(cmd, ROOT, logf, seconds + 60, RUN_ENV)
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", out)
    if not execs:
        execs = re.findall(r"^#(\d+)", out, re.M)
    n = int(execs[-1]) if execs else 0
    seed_kill = "INITED" not in out  # the finding came while the seeds were being run
    found = rc != 0 and ("ERROR: " in out or "oracle failed" in out or "deadly signal" in out
                         or "[timeout]" in out)
    rshort = first_reason(out) if found else ""
    return found, dt, n, seed_kill, rshort, out


def mode_fuzz(mutants, logf, work):
    t0 = time.monotonic()
    base = Tree(os.path.join(work, "base-src"))
    srcs = PROTO_C + [f"fuzz/{f}.c" for f in FUZZERS]
    reuse = compile_objs(base, "clang", CLANG_FLAGS, srcs, os.path.join(work, "base"), logf)
    # Control: the unmodified code passes every fuzzer over its seeds.
    for f in FUZZERS:
        b = link("clang", CLANG_FLAGS, [reuse[f"fuzz/{f}.c"]] + [reuse[s] for s in PROTO_C],
                 os.path.join(work, "base", f), base.dir, [], logf)
        found, dt, n, _, why, out = fuzz_run(b, f, work, logf, 60, 0, "seeds")
        if found or "Done" not in out:
            log(logf, out)
            print(f"mutants-fuzz: CONTROL FAILED: {f} on the unmodified code: {why}")
            return [], False
    rows = []
    for m in mutants:
        d = os.path.join(work, m.name)
        try:
            tree = Tree(os.path.join(d, "src"), m)
            objs = compile_objs(tree, "clang", CLANG_FLAGS, srcs, os.path.join(d, "obj"), logf,
                                reuse)
        except (ValueError, RuntimeError) as e:
            rows.append((m, None, str(e)))
            log(logf, f"mutant {m.name}: {e}")
            continue
        # From seeds every fuzzer is a fall-back; from nothing only the table's own (a fuzzer
        # that cannot reach the mutated code would spend its full budget for nothing).
        order = m.fuzz + ([f for f in FUZZERS if f not in m.fuzz] if FUZZ_CORPUS == "seeds" else [])
        tried, killer = [], None
        for f in order:
            b = link("clang", CLANG_FLAGS, [objs[f"fuzz/{f}.c"]] + [objs[s] for s in PROTO_C],
                     os.path.join(d, f), tree.dir, [], logf)
            found, dt, n, at_seed, why, out = fuzz_run(b, f, d, logf, FUZZ_SECONDS, FUZZ_RUNS,
                                                       FUZZ_CORPUS)
            tried.append((f, found, dt, n))
            log(logf, f"--- {m.name}: {f}: {'KILLED' if found else 'survived'} after {dt:.1f} s, "
                      f"{n} execs{' (by a seed)' if found and at_seed else ''}: {why}")
            if found:
                log(logf, "\n".join(l for l in out.splitlines()
                                    if "oracle failed" in l or "ERROR" in l or "SUMMARY" in l))
                killer = (f, dt, n, at_seed, why)
                break
        rows.append((m, killer, tried))
        shutil.rmtree(d, ignore_errors=True)
    print(f"mutants-fuzz: {len(mutants)} mutants, control passed, corpus={FUZZ_CORPUS}, "
          f"{time.monotonic() - t0:.0f} s")
    return rows, True


# ---------------------------------------------------------------- main

def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("tests", "fuzz"):
        print(__doc__)
        return 2
    mode = sys.argv[1]
    names = sys.argv[2:]
    mutants = [m for m in MUTANTS if not names or m.name in names]
    if names and len(mutants) != len(names):
        print("unknown mutant(s):", set(names) - {m.name for m in MUTANTS})
        return 2
    res_dir = os.path.join(ROOT, "build", "results")
    os.makedirs(res_dir, exist_ok=True)
    out = os.path.join(res_dir, "mutants" if mode == "tests" else "mutants-fuzz")
    work = tempfile.mkdtemp(prefix="tf-mutants-")
    try:
        with open(out + ".log", "w") as logf:
            if mode == "tests":
                rows, ok = mode_tests(mutants, logf, work)
            else:
                rows, ok = mode_fuzz(mutants, logf, work)
            killed = survived = 0
            w = max(len(m.name) for m in mutants)
            lines = []
            if mode == "tests":
                lines.append(f"{'mutant':<{w}}  tests + corpus replay (killed by)")
                for m, killers, err in rows:
                    if err or not killers:
                        survived += 1
                        lines.append(f"{m.name:<{w}}  SURVIVED{': ' + err if err else ''}")
                    else:
                        killed += 1
                        lines.append(f"{m.name:<{w}}  killed: " + ", ".join(k for k, _ in killers))
            else:
                lines.append(f"{'mutant':<{w}}  fuzz (first killer, time, execs)")
                for m, killer, tried in rows:
                    if killer is None:
                        survived += 1
                        lines.append(f"{m.name:<{w}}  SURVIVED" +
                                     (f": {tried}" if isinstance(tried, str) else
                                      f" ({', '.join(f'{f} {dt:.0f} s' for f, _, dt, _ in tried)})"))
                    else:
                        killed += 1
                        f, dt, n, at_seed, why = killer
                        tag = (" (a seed)" if FUZZ_CORPUS == "seeds" else " (the empty input)") \
                            if at_seed else ""
                        lines.append(f"{m.name:<{w}}  killed: {f} {dt:.1f} s, {n} execs{tag}: {why}")
            for l in lines:
                print(l)
                log(logf, l)
            if not ok:
                survived = max(survived, 1)
            with open(out, "w") as fh:
                fh.write(f"{killed} {survived}\n")
            tag = "mutants" if mode == "tests" else "mutants-fuzz"
            print(f"{tag}: {killed} killed, {survived} survived")
            return 0 if survived == 0 and ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
