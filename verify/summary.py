#!/usr/bin/env python3
"""summary.py REPORT.json -- goals proved / total per function of proto/, and by which prover."""
import json
import sys

rep = json.load(open(sys.argv[1]))
funcs = rep.get("wp:functions", {})
rows = []
for fn, goals in sorted(funcs.items()):
    total = valid = smoke = 0
    provers = {}
    for name, res in goals.items():
        if name.startswith("wp:"):
            continue  # the section's own aggregate
        main = res.get("wp:main", {})
        total += main.get("total", 0)
        valid += main.get("valid", 0)
        smoke += "_wp_smoke_" in name
        for p, r in res.items():
            if p != "wp:main" and r.get("valid"):
                provers[p] = provers.get(p, 0) + r["valid"]
    rows.append((fn, valid, total, smoke, provers))
w = max(len(r[0]) for r in rows) if rows else 8
print(f"{'function':<{w}}  proved/total  (smoke tests)  by prover")
for fn, v, t, s, pr in rows:
    mark = "" if v == t else "   <-- UNPROVED"
    by = ", ".join(f"{k} {n}" for k, n in sorted(pr.items()))
    print(f"{fn:<{w}}  {v:>6}/{t:<6}  ({s:>3})          {by}{mark}")
g = rep.get("wp:global", {}).get("wp:main", {})
print(f"{'all':<{w}}  {g.get('valid', 0):>6}/{g.get('total', 0):<6}")
