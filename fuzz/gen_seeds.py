#!/usr/bin/env python3
"""gen_seeds.py -- write the hand-made seed corpora of fuzz/corpus/<target>/.

    python3 fuzz/gen_seeds.py            (from the repository root; rewrites the seeds it knows)

Each seed is named after what it exercises. The layouts follow the comment at the top of each
fuzz/fuzz_<target>.c. Inputs found by the fuzzers and worth keeping are added to the corpus
directories by hand (under a telling name) and are not touched by this script.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def be32(v):
    return struct.pack(">I", v)


def frame(payload):
    return be32(len(payload)) + payload


def u16(v):
    return struct.pack(">H", v)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# Script bytes of fuzz_common.h (fz_answer), with faults enabled:
AGAIN = 0x00          # k = 0
INTR = lambda run: 0x10 | run  # k = 1; run 15 = TF_MAX_INTR + 3 interrupts
FAIL, ZERO, LIE = 0x20, 0x26, 0x2B  # k = 2 (faults level 2 only)
MOVE = lambda v: 0x30 | v  # chunk size code v (random mode: v < 8 -> v + 1 bytes; 15 = all)
CH_ONE, CH_RANDOM, CH_ALL = 0, 1, 2


def mode(chunk, faults):
    return chunk + 3 * faults


# ---------------------------------------------------------------- max_len selectors
def max_small(v):  # 0..31
    return bytes([3 + 8 * v])


MAX_DEFAULT = bytes([0])
MAX_U32 = bytes([1])
MAX_ZERO = bytes([2])
MAX_U32_M1 = bytes([5])


def max_u16(v):
    return bytes([4]) + u16(v)


# ---------------------------------------------------------------- fuzz_rx
def rx(name, stream, m=mode(CH_ALL, 0), flags=0, mx=MAX_DEFAULT, span=1500, arena=1500, fail_at=0,
       ctl=b""):
    write("fuzz_rx", name, bytes([m, flags]) + mx + u16(span) + u16(arena) + bytes([fail_at, len(ctl)])
          + ctl + stream)


ALLOC, ARENA, ABANDON, SPAN_NONNULL = 1, 2, 4, 8
two = frame(b"hello") + frame(b"") + frame(b"world!")
for c, cn in ((CH_ONE, "1byte"), (CH_RANDOM, "random"), (CH_ALL, "all")):
    ctl = bytes([MOVE(1), MOVE(3), MOVE(15), MOVE(0)] * 8)
    rx(f"span-three-msgs-{cn}", two, m=mode(c, 0), ctl=ctl)
    rx(f"alloc-three-msgs-{cn}", two, m=mode(c, 0), flags=ALLOC, ctl=ctl)
rx("empty-stream-closed", b"")
rx("len0-only", frame(b""))
rx("len0-twice-then-closed", frame(b"") + frame(b""), m=mode(CH_ONE, 0), ctl=bytes([MOVE(0)] * 8))
rx("prefix-truncated-2", b"\x00\x00", m=mode(CH_ONE, 0), ctl=bytes([MOVE(0)] * 4))
rx("body-truncated", be32(10) + b"abc")
rx("body-truncated-right-after-prefix", be32(10), flags=ALLOC)
rx("max-exact", frame(b"x" * 16), mx=max_small(16))
rx("max-plus-1-too-large", frame(b"x" * 17), mx=max_small(16))
rx("max-zero-len1-too-large", frame(b"x"), mx=MAX_ZERO)
rx("max-zero-len0-ok", frame(b""), mx=MAX_ZERO)
rx("default-max-exact-truncated", be32(67108864) + b"abc", flags=ALLOC)
rx("default-max-plus-1-too-large", be32(67108865) + b"abc", flags=ALLOC)
rx("u32max-len-u32max-alloc", be32(0xFFFFFFFF) + b"ab", mx=MAX_U32, flags=ALLOC)
rx("u32max-minus-1-refuses-u32max", be32(0xFFFFFFFF), mx=MAX_U32_M1, flags=ALLOC)
rx("span-cap-exact", frame(b"12345678"), span=8)
rx("span-cap-minus-1-buffer-too-small", frame(b"12345678"), span=7)
rx("span-cap0-null-buffer-too-small", frame(b"1"), span=0)
rx("span-cap0-nonnull-len0", frame(b"") + frame(b"1"), span=0, flags=SPAN_NONNULL)
rx("alloc-fail-first-nomem", two, flags=ALLOC, fail_at=1)
rx("alloc-fail-second-nomem", two, flags=ALLOC, fail_at=2)
rx("arena-fits", two, flags=ALLOC | ARENA, arena=6)
rx("arena-too-small-nomem", two, flags=ALLOC | ARENA, arena=5)
rx("again-intr-1byte", two, m=mode(CH_ONE, 1),
   ctl=bytes([AGAIN, INTR(2), MOVE(0), AGAIN, INTR(0), MOVE(0), AGAIN] * 6))
rx("again-intr-random", two, m=mode(CH_RANDOM, 1), flags=ALLOC,
   ctl=bytes([INTR(3), MOVE(2), AGAIN, MOVE(5), INTR(14), MOVE(1), AGAIN] * 5))
rx("intr-storm-max-intr", two, m=mode(CH_RANDOM, 1), ctl=bytes([INTR(15), MOVE(1), INTR(15)]))
rx("intr-runs-not-consecutive", be32(100) + bytes(range(100)), m=mode(CH_RANDOM, 1),
   ctl=bytes([INTR(14), MOVE(1)] * 6))
rx("io-fail-in-body", two, m=mode(CH_ONE, 2), ctl=bytes([MOVE(0)] * 6 + [FAIL]))
rx("io-fail-between", two, m=mode(CH_ALL, 2), ctl=bytes([MOVE(15), FAIL]))
rx("early-close-in-prefix", two, m=mode(CH_ONE, 2), ctl=bytes([MOVE(0), ZERO]))
rx("early-close-between", two, m=mode(CH_RANDOM, 2), ctl=bytes([MOVE(8), ZERO]))
rx("lie-in-prefix", two, m=mode(CH_ONE, 2), ctl=bytes([MOVE(0), LIE]))
rx("lie-len-plus-1-at-start", two, m=mode(CH_RANDOM, 2), ctl=bytes([LIE]))
rx("lie-minus-4-in-body", two, m=mode(CH_RANDOM, 2), flags=ALLOC, ctl=bytes([MOVE(0)] * 5 + [LIE + 1]))
rx("lie-long-max", two, m=mode(CH_RANDOM, 2), ctl=bytes([MOVE(3), LIE + 2]))
rx("abandon-mid-body-span", be32(10) + b"abcdefghij", m=mode(CH_ONE, 1), flags=ABANDON,
   ctl=bytes([MOVE(0)] * 6 + [AGAIN]))
rx("abandon-mid-body-alloc", be32(10) + b"abcdefghij", m=mode(CH_ONE, 1), flags=ABANDON | ALLOC,
   ctl=bytes([MOVE(0)] * 6 + [AGAIN]))

# Lengths of 2^31 and above against small and default maxima (TOO_LARGE as the 4th byte
# lands; a signed comparison would accept them) and against maxima that allow them.
BIG_LENS = (0x80000000, 0xFFFFFFF0, 0xFFFFFFFF)
for L in BIG_LENS:
    for mx, mn in ((max_small(16), "max16"), (MAX_DEFAULT, "default"), (MAX_ZERO, "max0")):
        rx(f"len-{L:08x}-{mn}-too-large-alloc", be32(L) + b"abc", flags=ALLOC, mx=mx)
        rx(f"len-{L:08x}-{mn}-too-large-span-1byte", be32(L) + b"abc", mx=mx, m=mode(CH_ONE, 0),
           ctl=bytes([MOVE(0)] * 8))
    rx(f"len-{L:08x}-u32max-nomem", be32(L) + b"abc", flags=ALLOC | ARENA, arena=100, mx=MAX_U32)
# Small messages under maxima of 2^31 and above: accepted (signed, such a max is negative).
rx("u32max-small-msgs", two, mx=MAX_U32)
rx("u32max-minus-1-small-msgs-alloc", two, mx=MAX_U32_M1, flags=ALLOC)

# ---------------------------------------------------------------- fuzz_handshake
def hs(name, peer, m=mode(CH_ALL, 0), flags=0, wctl=b"", rctl=b""):
    write("fuzz_handshake", name, bytes([m, flags, len(wctl)]) + wctl + bytes([len(rctl)]) + rctl + peer)


SANS = 1
for f, fn in ((0, "try"), (SANS, "sansio")):
    hs(f"{fn}-magic-all", b"UNIF", flags=f)
    hs(f"{fn}-magic-then-message", b"UNIF" + frame(b"hi"), flags=f)
    hs(f"{fn}-magic-1byte", b"UNIF", m=mode(CH_ONE, 0), flags=f, wctl=bytes([MOVE(0)] * 4),
       rctl=bytes([MOVE(0)] * 4))
    hs(f"{fn}-magic-split-2-2", b"UNIF", m=mode(CH_RANDOM, 0), flags=f, wctl=bytes([MOVE(1)] * 2),
       rctl=bytes([MOVE(1)] * 2))
    for i, bad in enumerate((b"XNIF", b"UXIF", b"UNXF", b"UNIX")):
        hs(f"{fn}-bad-magic-at-{i}", bad, flags=f)
        hs(f"{fn}-bad-magic-at-{i}-1byte", bad, m=mode(CH_ONE, 0), flags=f, rctl=bytes([MOVE(0)] * 4))
    hs(f"{fn}-peer-silent", b"", flags=f)
    hs(f"{fn}-peer-3-bytes", b"UNI", flags=f)
    for v in range(3):  # len + 1, -4, LONG_MAX
        hs(f"{fn}-lie-write-{v}", b"UNIF", m=mode(CH_RANDOM, 2), flags=f, wctl=bytes([MOVE(0), LIE + v]))
        hs(f"{fn}-lie-read-{v}", b"UNIF", m=mode(CH_RANDOM, 2), flags=f, rctl=bytes([MOVE(0), LIE + v]))
    hs(f"{fn}-again-both", b"UNIF", m=mode(CH_ONE, 1), flags=f, wctl=bytes([AGAIN, MOVE(0)] * 4),
       rctl=bytes([AGAIN, AGAIN, MOVE(0)] * 4))
hs("try-closed-before-any", b"")
hs("try-truncated-after-1", b"U")
hs("try-truncated-after-3-1byte", b"UNI", m=mode(CH_ONE, 0), rctl=bytes([MOVE(0)] * 3))
hs("try-write-fail", b"UNIF", m=mode(CH_ALL, 2), wctl=bytes([FAIL]))
hs("try-write-zero-closed", b"UNIF", m=mode(CH_ALL, 2), wctl=bytes([ZERO]))
hs("try-write-zero-after-peer-byte-truncated", b"UNIF", m=mode(CH_ONE, 2),
   wctl=bytes([AGAIN, ZERO]), rctl=bytes([MOVE(0)]))
hs("try-read-fail", b"UNIF", m=mode(CH_ALL, 2), rctl=bytes([FAIL]))
hs("try-read-zero-after-2", b"UNIF", m=mode(CH_ONE, 2), rctl=bytes([MOVE(0), MOVE(0), ZERO]))
hs("try-write-blocked-read-done", b"UNIF", m=mode(CH_ALL, 1), wctl=bytes([AGAIN, AGAIN, AGAIN]))
hs("try-read-blocked-write-done", b"UNIF", m=mode(CH_ALL, 1), rctl=bytes([AGAIN, AGAIN]))
hs("try-intr-storm-write", b"UNIF", m=mode(CH_ALL, 1), wctl=bytes([INTR(15)]))
hs("try-intr-storm-read", b"UNIF", m=mode(CH_ALL, 1), wctl=bytes([AGAIN] * 40), rctl=bytes([INTR(15)]))
hs("try-write-done-then-intr-storm-read", b"UNIF", m=mode(CH_ALL, 1), rctl=bytes([INTR(15)]))
hs("try-intr-both", b"UNIF", m=mode(CH_ONE, 1), wctl=bytes([INTR(14), MOVE(0)] * 4),
   rctl=bytes([INTR(14), MOVE(0)] * 4))

# ---------------------------------------------------------------- fuzz_roundtrip
def rt(name, msgs, m=mode(CH_ALL, 0), flags=0, txm=MAX_DEFAULT, rxm=MAX_DEFAULT, pipe=64, span=400,
       ctl=b"", probe=None):
    body = b""
    for p in msgs:
        if isinstance(p, int):  # generated payload of p bytes
            body += bytes([128 | (p // 16), p % 16])
        else:
            body += bytes([len(p)]) + p
    if probe is not None:
        flags |= PROBE
    write("fuzz_roundtrip", name, bytes([m, flags]) + txm + rxm + u16(pipe - 1) + u16(span)
          + (be32(probe) if probe is not None else b"") + bytes([len(ctl)]) + ctl + body)


R_ALLOC, TX_SANS, RX_SANS, PROBE = 1, 2, 4, 8
basic = [b"hello", b"", b"x" * 40, 100, b"end"]
for c, cn in ((CH_ONE, "1byte"), (CH_RANDOM, "random"), (CH_ALL, "all")):
    ctl = bytes([MOVE(0), MOVE(2), MOVE(6), MOVE(15)] * 16)
    rt(f"basic-{cn}", basic, m=mode(c, 0), ctl=ctl)
    rt(f"basic-{cn}-alloc-sansio", basic, m=mode(c, 0), flags=R_ALLOC | TX_SANS | RX_SANS, ctl=ctl)
rt("pipe-1-byte", basic, pipe=1)
rt("pipe-1-byte-sansio", basic, pipe=1, flags=TX_SANS | RX_SANS | R_ALLOC)
rt("no-messages", [])
rt("only-empty", [b"", b"", b""])
rt("tx-max-refuses-some", [b"abc", b"abcdefghijkl", b"xy"], txm=max_small(4))
rt("rx-max-too-large", [b"abc", b"abcdefghijkl", b"xy"], rxm=max_small(4))
rt("rx-max-zero", [b"", b"a"], rxm=MAX_ZERO, flags=R_ALLOC)
rt("span-too-small", [b"abc", b"abcdefghijkl"], span=4)
rt("span-too-small-sansio", [b"abc", b"abcdefghijkl"], span=4, flags=RX_SANS)
rt("again-intr", basic, m=mode(CH_RANDOM, 1), ctl=bytes([AGAIN, INTR(3), MOVE(1), INTR(15), MOVE(4)] * 8))
rt("write-fail", basic, m=mode(CH_RANDOM, 2), ctl=bytes([MOVE(2), MOVE(2), FAIL]))
rt("write-zero-closed", basic, m=mode(CH_RANDOM, 2), ctl=bytes([MOVE(5), ZERO]))
for v in range(3):
    rt(f"write-lie-{v}", basic, m=mode(CH_RANDOM, 2), ctl=bytes([MOVE(1), LIE + v]))
rt("write-faults-sansio", basic, m=mode(CH_RANDOM, 2), flags=TX_SANS,
   ctl=bytes([FAIL, MOVE(1), ZERO, LIE, MOVE(3)] * 4))
rt("u32max-both", basic, txm=MAX_U32, rxm=MAX_U32)
rt("u32max-minus-1-both-sansio", basic, txm=MAX_U32_M1, rxm=MAX_U32_M1, flags=TX_SANS | RX_SANS)
rt("tx-max-exact", [b"abcd", b"abcde", b"abc"], txm=max_small(4))
rt("rx-max-exact", [b"abcd", b"abc"], rxm=max_small(4))
# The header probe: lengths of 2^31 and above against small, default and u32 maxima.
for L in (0x80000000, 0x80000001, 0xFFFFFFF0, 0xFFFFFFFF, 0x7FFFFFFF, 0x01020304, 0):
    for mx, mn in ((max_small(16), "max16"), (MAX_DEFAULT, "default"), (MAX_U32, "u32max")):
        rt(f"probe-{L:08x}-{mn}", [b"ab"], txm=mx, probe=L)
# Interrupt runs of 14 between progress: never 64 in a row, so never AGAIN on interrupts.
rt("tx-intr-runs-reset-by-progress", [100, 90], m=mode(CH_RANDOM, 1), pipe=300,
   ctl=bytes([INTR(14), MOVE(1)] * 12))
rt("tx-intr-storm", [b"abc"], m=mode(CH_ALL, 1), ctl=bytes([INTR(15), MOVE(15)]))
rt("many-small", [bytes([i]) * (i % 5) for i in range(40)], m=mode(CH_RANDOM, 1),
   ctl=bytes([MOVE(i % 16) for i in range(200)]))

# ---------------------------------------------------------------- fuzz_split
def sp(name, stream, mx=MAX_DEFAULT, flags=0, seed=0):
    write("fuzz_split", name, mx + bytes([flags, seed]) + stream)


frames = frame(b"abc") + frame(b"") + frame(b"0123456789" * 3) + frame(b"z")
for dec, dn in ((0, "bytes"), (1, "random"), (2, "split"), (3, "sansio")):
    sp(f"{dn}-frames", frames, flags=dec << 2, seed=dec)
    sp(f"{dn}-frames-tail", frames + be32(9) + b"tail", flags=(dec << 2) | 1, seed=7)
    sp(f"{dn}-too-large", frames + be32(17) + b"x" * 17, mx=max_small(16), flags=dec << 2)
    sp(f"{dn}-prefix-tail", frames + b"\x00\x00", flags=dec << 2)
    sp(f"{dn}-empty", b"", flags=dec << 2)
    sp(f"{dn}-len0-frames", frame(b"") * 5, flags=dec << 2)
    sp(f"{dn}-prefix-only", be32(5), flags=dec << 2)
sp("max-exact", frame(b"m" * 16), mx=max_small(16), flags=2 << 2)
sp("max-zero", frame(b"") + frame(b"a"), mx=MAX_ZERO, flags=2 << 2)
sp("u32-max-len", be32(0xFFFFFFFF) + b"abc", mx=MAX_U32, flags=1 << 2)
sp("u16-max", be32(65535) + b"abc", mx=max_u16(65535), flags=3 << 2)

for L in BIG_LENS:
    for dec, dn in ((0, "bytes"), (1, "random"), (2, "split"), (3, "sansio")):
        for mx, mn in ((max_small(16), "max16"), (MAX_DEFAULT, "default")):
            sp(f"{dn}-len-{L:08x}-{mn}-too-large", frame(b"ok") + be32(L) + b"abc", mx=mx,
               flags=dec << 2)
        sp(f"{dn}-len-{L:08x}-u32max-truncated", frame(b"ok") + be32(L) + b"abc", mx=MAX_U32,
           flags=dec << 2)
for dec, dn in ((0, "bytes"), (2, "split"), (3, "sansio")):
    sp(f"{dn}-u32max-small-frames", frames, mx=MAX_U32, flags=dec << 2, seed=3)
    sp(f"{dn}-u32max-minus-1-small-frames", frames, mx=MAX_U32_M1, flags=dec << 2, seed=5)
# Frames that end exactly where a read ends: the splitter must say DONE for each.
sp("split-frames-exact-ends", frame(b"abc") + frame(b"") + frame(b"xy"), flags=2 << 2, seed=9)

# ---------------------------------------------------------------- fuzz_err
codes = list(range(0, 12)) + list(range(62, 72)) + [-1, 0x7FFFFFFF, -0x80000000, 255, 128]
write("fuzz_err", "all-codes-and-neighbours", b"".join(struct.pack("<i", c) for c in codes))
write("fuzz_err", "empty", b"")
write("fuzz_err", "odd-length", b"\x05\x00\x00\x00\x41\x00")

# ---------------------------------------------------------------- fuzz_conn
# Config byte: bit 0 handshake, bits 1-2 read_buffer (7, 64, 4096, 65536), bit 3 max_recv 300,
# bit 4 send_queue_msgs 3, bit 5 the peer sends the magic first, bit 6 4 KiB socket buffers. Steps: opcode byte + arguments.
C_RAW, C_FRAME, C_BIGFRAME, C_PAUSE, C_SEND, C_RECV, C_RALLOC = 0, 1, 2, 3, 4, 5, 6
C_STREAM, C_UNSTREAM, C_CLOSE, C_ABORT, C_FREE, C_SHUTWR, C_PEERCLOSE = 7, 8, 9, 10, 11, 12, 13
# With config bit 7 (life=True): the next completion callback frees / stops the loop; a second
# submitting thread (n-1 ops, each a kind byte: 0 send future, 1 send callback, 2 send owned,
# 3 recv callback, 4 recv_alloc callback, 5 stream on; then a u16 size); join it.
C_ARMFREE, C_ARMSTOP, C_HELPER, C_JOIN = 14, 15, 16, 17


def cf(hs=True, rbuf=3, max300=False, q3=False, magic=True, small=False, life=False):
    return bytes([int(hs) | rbuf << 1 | int(max300) << 3 | int(q3) << 4 | int(magic) << 5 |
                  int(small) << 6 | int(life) << 7])


def c_helper(*ops):
    return bytes([C_HELPER, len(ops) - 1]) + b"".join(bytes([k]) + u16(n) for k, n in ops)


def c_raw(b):
    return bytes([C_RAW, len(b)]) + b


def c_frame(n, big=False):
    return bytes([C_BIGFRAME if big else C_FRAME]) + u16(n)


def c_pause(n=6):
    return bytes([C_PAUSE, n - 1])


def c_send(n, fut=False, timeout=False, owned=False, big=False):
    return bytes([C_SEND, int(fut) | int(timeout) << 1 | int(owned) << 2 | int(big) << 3]) + u16(n)


def c_recv(cap, fut=False, timeout=False, alloc=False):
    return bytes([C_RALLOC if alloc else C_RECV, int(fut) | int(timeout) << 1]) + u16(cap)


def cn(name, data):
    write("fuzz_conn", name, data)


P = c_pause()
for rb in range(4):
    cn(f"echo-rbuf{rb}", cf(rbuf=rb) + c_recv(1000) + c_recv(0, alloc=True) + c_frame(5) + P +
       c_frame(300) + P + c_send(17) + c_send(0, fut=True) + P + P)
    cn(f"stream-rbuf{rb}", cf(rbuf=rb) + bytes([C_STREAM]) + c_frame(2) + c_frame(0) + P +
       c_frame(0) + c_frame(390) + P + c_frame(5000, big=True) + P + bytes([C_SHUTWR]) + P + P)
cn("no-handshake-raw-frames", cf(hs=False, rbuf=0) + c_recv(64) + c_recv(64, fut=True) +
   c_raw(b"\x00\x00\x00\x02ab\x00") + P + c_raw(b"\x00\x00\x00") + P + P)
cn("bad-magic", cf(magic=False) + c_recv(10) + c_raw(b"UNIX") + P + P)
cn("magic-cut", cf(magic=False) + c_recv(10, alloc=True) + c_raw(b"UN") + P + c_raw(b"IF") + P +
   c_frame(3) + P + P)
cn("too-large", cf(max300=True) + c_recv(4000, alloc=True) + c_frame(10) + c_frame(5000, big=True) +
   P + P)
cn("span-too-small", cf() + c_recv(3) + c_frame(10) + P + P)
cn("truncated", cf(rbuf=1) + c_recv(100) + c_raw(b"\x00\x00\x00\x09abc") + bytes([C_SHUTWR]) + P + P)
cn("closed", cf() + c_recv(100) + c_recv(100) + c_frame(1) + bytes([C_SHUTWR]) + P + P)
cn("big-sends-partial", cf() + c_send(1000, big=True) + c_send(2000, big=True, owned=True, fut=True) +
   c_send(5, timeout=True) + P + P + P + P)
cn("send-timeout-0", cf() + c_send(10, big=True, timeout=True) + c_send(3, timeout=True, fut=True) + P)
cn("recv-timeout-0", cf() + c_recv(100, timeout=True) + P + c_frame(4) + c_recv(10, fut=True) + P + P)
cn("queue-bound", cf(q3=True) + c_send(1) * 5 + P + P)
cn("graceful-close", cf() + c_send(100) + c_recv(100) + bytes([C_CLOSE]) + c_frame(7) + P +
   bytes([C_SHUTWR]) + P + P)
cn("abort-pending", cf() + c_send(100, big=True) + c_recv(10) + c_recv(0, alloc=True) + P +
   bytes([C_ABORT]) + P)
cn("free-pending", cf() + c_recv(10, fut=True) + c_send(5, fut=True, owned=True) + bytes([C_FREE]))
cn("peer-close-then-send", cf() + bytes([C_PEERCLOSE]) + c_send(10) + c_recv(10) + P + P)
cn("stream-off-mid-frame", cf(rbuf=0) + bytes([C_STREAM]) + c_raw(b"\x00\x00\x00\x05ab") + P +
   bytes([C_UNSTREAM]) + c_raw(b"cde") + c_recv(10) + P + P)
cn("stream-empty-cut-in-prefix", cf(hs=False, rbuf=0) + bytes([C_STREAM]) +
   c_raw(b"\x00\x00\x00\x02ab\x00\x00\x00\x00") + P + P)
cn("big-sends-small-buffers", cf(small=True) + c_send(100, big=True) +
   c_send(3000, big=True, fut=True, owned=True) + c_send(7) + P + P + P + P + P + P + P + P)
cn("big-frames-small-buffers", cf(small=True, rbuf=2) + c_recv(0, alloc=True) + c_recv(4095) +
   c_frame(5999, big=True) + c_frame(4000, big=True) + P + P + P + P)
cn("cb-free-own", cf(life=True) + c_recv(10) + c_send(5) + bytes([C_ARMFREE]) + c_frame(5) + P +
   c_send(3) + P)
cn("cb-stop", cf(life=True) + c_send(10) + c_recv(10) + c_recv(0, alloc=True) + bytes([C_ARMSTOP]) +
   c_frame(3) + P + c_send(5, fut=True) + c_recv(5) + bytes([C_CLOSE]) + P)
cn("cb-stop-then-free", cf(life=True) + c_recv(10, fut=True) + bytes([C_ARMSTOP]) + c_frame(1) +
   P + bytes([C_FREE]) + P)
cn("helper-sends", cf(life=True) + c_helper((0, 10), (1, 20), (2, 3000), (1, 1)) + c_send(7) +
   c_send(9, fut=True) + P + c_frame(4) + P + bytes([C_JOIN]) + P + P)
cn("helper-stream-vs-recv", cf(life=True) + c_helper((5, 0)) + c_recv(100) + c_frame(7) + P +
   c_frame(8) + P + bytes([C_JOIN]) + P)
cn("helper-recvs-then-close", cf(life=True) + c_helper((3, 100), (4, 0), (0, 5)) + c_frame(2) +
   c_frame(3) + P + bytes([C_CLOSE]) + P + bytes([C_SHUTWR]) + P + P)
cn("helper-then-cb-free", cf(life=True, small=True) + c_helper((0, 2999), (2, 2999), (1, 2999)) +
   bytes([C_ARMFREE]) + c_send(5000, big=True) + P + P + P)
