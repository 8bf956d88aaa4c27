#!/usr/bin/env python3
"""summary.py REPORT.json [--check EXPECT | --update EXPECT] -- judge WP's JSON report.

Prints the goals proved / total per function of proto/ and by which prover, then every goal that
is not proved (smoke tests included: a smoke test that found dead code or an inconsistent
context is reported by WP as not valid). With --check, compares the goals per function with the
committed table EXPECT (verify/proved_goals.txt) and fails on any difference, so that a weakened
contract (fewer goals) or a function that dropped out of the proof shows up in review. With
--update, rewrites EXPECT (only when every goal is proved) and prints what changed per function.
Exit status: 0 if every goal is proved (and, with --check, the table matches), else 1.
"""
import json
import sys


def load_table(path):
    """The committed table: first line 'N / N', then 'function goals' lines."""
    try:
        lines = [l.split("#")[0].strip() for l in open(path)]
    except OSError:
        return None, {}
    lines = [l for l in lines if l]
    if not lines:
        return None, {}
    total, funcs = lines[0], {}
    for l in lines[1:]:
        name, n = l.split()
        funcs[name] = int(n)
    return total, funcs


def main():
    rep = json.load(open(sys.argv[1]))
    mode = sys.argv[2] if len(sys.argv) > 2 else None
    expect = sys.argv[3] if len(sys.argv) > 3 else None
    funcs = rep.get("wp:functions", {})
    rows, bad = [], []
    for fn, goals in sorted(funcs.items()):
        total = valid = smoke = 0
        provers = {}
        for name, res in goals.items():
            if name.startswith("wp:"):
                continue  # the section's own aggregate
            main_ = res.get("wp:main", {})
            t, v = main_.get("total", 0), main_.get("valid", 0)
            total += t
            valid += v
            smoke += "_wp_smoke_" in name
            if v != t:
                bad.append((fn, name))
            for p, r in res.items():
                if p != "wp:main" and r.get("valid"):
                    provers[p] = provers.get(p, 0) + r["valid"]
        rows.append((fn, valid, total, smoke, provers))
    w = max([len(r[0]) for r in rows] + [8])
    print(f"{'function':<{w}}  proved/total  (smoke tests)  by prover")
    for fn, v, t, s, pr in rows:
        mark = "" if v == t else "   <-- UNPROVED"
        by = ", ".join(f"{k} {n}" for k, n in sorted(pr.items()))
        print(f"{fn:<{w}}  {v:>6}/{t:<6}  ({s:>3})          {by}{mark}")
    g = rep.get("wp:global", {}).get("wp:main", {})
    gv, gt = g.get("valid", 0), g.get("total", 0)
    print(f"{'all':<{w}}  {gv:>6}/{gt:<6}")
    ok = True
    for fn, name in bad:
        kind = "smoke test failed (dead code or inconsistent context)" if "_wp_smoke_" in name \
            else "not proved"
        print(f"verify: {fn}: {name}: {kind}")
    if bad or gv != gt or gt == 0:
        print(f"verify: FAILED: {gt - gv} goal(s) unproved or smoke test(s) failed")
        ok = False
    if mode is None:
        return 0 if ok else 1
    now = {fn: t for fn, v, t, s, pr in rows}
    old_total, old = load_table(expect)
    changes = []
    for fn in sorted(set(old) | set(now)):
        a, b = old.get(fn), now.get(fn)
        if a != b:
            sa = "-" if a is None else str(a)
            sb = "-" if b is None else str(b)
            note = "  <-- FEWER GOALS: a weaker contract?" if a is not None and (b is None or b < a) else ""
            changes.append(f"  {fn:<{w}} {sa:>6} -> {sb:<6}{note}")
    line = f"{gv} / {gt}"
    if mode == "--update":
        if not ok:
            print(f"verify: not recording {expect}: the proof is incomplete")
            return 1
        with open(expect, "w") as f:
            f.write(line + "\n")
            f.write("# goals per function (WP's JSON report); `make verify-update` rewrites this file\n")
            for fn in sorted(now):
                f.write(f"{fn} {now[fn]}\n")
        print(f"verify: recorded {line} in {expect}; goals per function before -> after:")
        print("\n".join(changes) if changes else "  (no change)")
        if old_total != line:
            print(f"  total: {old_total} -> {line}")
        return 0
    if changes or old_total != line:
        print(f"verify: FAILED: proved {line} but {expect} says '{old_total}'; per function:")
        print("\n".join(changes) if changes else "  (totals differ only)")
        print("        if the change of contracts is deliberate, run 'make verify-update' and")
        print(f"        commit {expect} (review the goals that went away)")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
