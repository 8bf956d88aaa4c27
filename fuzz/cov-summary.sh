#!/usr/bin/env bash
# cov-summary.sh LCOV_FILE -- line and branch coverage of proto/ from `llvm-cov export -format=lcov`.
# Lines: llvm-cov gives the #define / #undef lines of an X-macro (proto/err.c) zero-count regions
# of their own although they are no code; lines whose source starts with '#' are left out of the
# line figure (and counted apart). Exits 1 below the goal of issue 5 (100% lines, >= 95% branches).
set -eu
awk '
/^SF:/ { file = substr($0, 4); n = 0; while ((getline line < file) > 0) src[file, ++n] = line; close(file); next }
/^DA:/ { split(substr($0, 4), a, ","); text = src[file, a[1]];
         if (text ~ /^[ \t]*#/) { pp++; if (a[2] == 0) ppmiss++; next }
         lines++; if (a[2] > 0) lhit++; else lmiss[file ":" a[1]] = 1; next }
/^BRDA:/ { split(substr($0, 6), b, ","); br++; if (b[4] != "-" && b[4] > 0) bhit++; else bmiss[file ":" b[1]] = 1; next }
END {
  lp = lines ? 100 * lhit / lines : 0; bp = br ? 100 * bhit / br : 0;
  for (k in lmiss) print "coverage: line not reached: " k;
  for (k in bmiss) print "coverage: branch not taken both ways: " k;
  ok = (lhit == lines && bp >= 95);
  printf "coverage: proto/ lines %.2f%% (%d/%d), branches %.2f%% (%d/%d); %d preprocessor lines left out (%d zero-count X-macro artifacts); goal 100%% / 95%%: %s\n", \
    lp, lhit, lines, bp, bhit, br, pp, ppmiss, ok ? "met" : "NOT MET";
  exit !ok
}' "$1"
