#!/usr/bin/env python3
"""gen-man.py -- the reference manual, generated from the headers (issue 24, SPEC.md 10.4).

    scripts/gen-man.py [--out build/man]

writes OUT/man3/<function>.3 for every TF_API declaration of include/tcpframe/*.h and of the
TLS layer's tls/tcpframe/tls.h (installed beside them), and OUT/man7/tcpframe.7. The headers
are the manual (STYLE 3): a function's page is the comment right above its declaration (a
comment shared by consecutive declarations, such as tf_async_server_on_accept / _on_reject,
makes one page for each), split at its aligned "Returns" list into DESCRIPTION and RETURN
VALUE. tcpframe(7) is put together from README.md's introduction, SPEC.md section 2 (the wire
format), each header's opening comment and err.h's error list. Nothing here is written by hand
twice: change the header, and the page follows.

A declaration without a comment above it is an error (exit 1), as is a header that does not
parse. scripts/man-check.sh checks the result against the compiler's view of the headers.
Standard library only (python3 >= 3.7).
"""
import argparse
import os
import re
import sys

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
INC = os.path.join(TOP, "include", "tcpframe")
# Every installed header's directory in the source tree: the library's, the TLS layer's.
HEADER_DIRS = [INC, os.path.join(TOP, "tls", "tcpframe")]
# The LIBRARY section of a page: the library's, unless its header is another archive's.
LIBRARY = {"tls.h": "tcpframe TLS (\\fIlibtcpframe_tls.a\\fP with \\fIlibtcpframe.a\\fP and"
                    " OpenSSL; pkg-config \\fB\\-\\-static tcpframe-tls\\fP;"
                    " CMake \\fBtcpframe::tls\\fP)"}
LIBRARY_DEFAULT = ("tcpframe (\\fIlibtcpframe\\fP, \\fB\\-ltcpframe\\fP;"
                   " pkg-config \\fBtcpframe\\fP; CMake \\fBtcpframe::tcpframe\\fP)")

# Characters of the Markdown and comments that roff is better told by name.
UNI = {"·": "*", "−": "\\-", "→": "\\(->", "←": "\\(<-", "—": "\\(em", "–": "\\(en",
       "≤": "<=", "≥": ">=", "×": "x", "…": "..."}


def esc(text):
    """Escape plain text for roff (not the start-of-line rule: see line())."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    for k, v in UNI.items():
        text = text.replace(k, v)
    return text


def line(text):
    """A text line that roff will not take for a request (leading . or ')."""
    if text.startswith((".", "'")):
        return "\\&" + text
    return text


def params(text):
    """|name| in a comment is a parameter: italic, as man pages set them."""
    return re.sub(r"\|([A-Za-z_][A-Za-z0-9_>.-]*)\|", r"\\fI\1\\fP", text)


def inline_md(text):
    """Inline Markdown to roff: `code` bold, **strong** bold, [text](url) text."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`)", text)):
        if i % 2:
            out.append("\\fB" + esc(part[1:-1]) + "\\fP")
        else:
            part = esc(part)
            part = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fP", part)
            part = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\\fI\1\\fP", part)
            out.append(part)
    return "".join(out)


# ---------------------------------------------------------------- header parsing

class Decl:
    def __init__(self, header, name, proto, comment, macro, path):
        self.header, self.name, self.proto = header, name, proto
        self.path = path  # the header's path in the source tree
        self.comment, self.macro = comment, macro
        self.group = [self]  # the declarations sharing this comment


def comment_lines(block):
    """The text of a /* ... */ block, one entry per line, the ' * ' margin removed."""
    out = []
    for i, raw in enumerate(block):
        s = raw.rstrip()
        if i == 0:
            s = s.lstrip()[2:]  # '/*'
        else:
            s = s.lstrip()
            if s.startswith("*") and not s.startswith("*/"):
                s = s[1:]
        if s.endswith("*/"):
            s = s[:-2].rstrip()
        if s.startswith(" "):
            s = s[1:]
        out.append(s.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def parse_header(path):
    """(opening comment lines, [Decl]) of one header."""
    name = os.path.basename(path)
    lines = open(path, encoding="utf-8").read().split("\n")
    opening = []
    if lines and lines[0].startswith("/*"):
        j = 0
        while "*/" not in lines[j]:
            j += 1
        opening = comment_lines(lines[: j + 1])
    skip = set()  # lines that may stand between a comment and the declaration it documents
    decls, errors = [], []
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("#define"):
            j = i
            while lines[j].rstrip().endswith("\\"):
                j += 1
            skip.update(range(i, j + 1))
            i = j + 1
            continue
        if not ln.startswith("TF_API"):
            i += 1
            continue
        j = i
        while ";" not in lines[j]:
            j += 1
        text = " ".join(x.strip() for x in lines[i: j + 1])
        m = re.match(r"TF_API\s+(.*?)\b(tf_[A-Za-z0-9_]+)\s*\((.*)\)\s*;", text)
        if not m:
            errors.append("%s:%d: cannot parse the declaration: %s" % (name, i + 1, text))
            i = j + 1
            continue
        proto = (m.group(1).strip(), m.group(2), m.group(3).strip())
        # The comment: right above, past other declarations and #defines (a shared comment).
        k = i - 1
        while k >= 0 and k in skip:
            k -= 1
        comment = None
        if k >= 0 and lines[k].rstrip().endswith("*/"):
            e = k
            while "/*" not in lines[k]:
                k -= 1
            comment = comment_lines(lines[k: e + 1])
            if len(comment) == 1 and comment[0].startswith("---"):
                comment = None  # a section rule, not documentation
        if comment is None:
            errors.append("%s:%d: %s has no comment above it (the headers are the manual)"
                          % (name, i + 1, proto[1]))
        # A macro of the same name right after (tf_tcp_config_init) belongs to the synopsis.
        macro = None
        if j + 1 < len(lines) and re.match(r"#define %s\(" % re.escape(proto[1]), lines[j + 1]):
            macro = lines[j + 1].strip()
        d = Decl(name, proto[1], proto, comment or [], macro, os.path.relpath(path, TOP))
        decls.append(d)
        skip.update(range(i, j + 1))
        i = j + 1
    # Group consecutive declarations that share one comment (same list object above).
    for a, b in zip(decls, decls[1:]):
        if b.comment and a.comment == b.comment and a.header == b.header:
            a.group.append(b)
            b.group = a.group
    return opening, decls, errors


def fmt_proto(ret, name, args):
    """The prototype, wrapped at 78 columns with the arguments aligned after '('."""
    head = "%s%s%s(" % (ret, "" if ret.endswith("*") else " ", name)
    parts = [a.strip() for a in re.split(r",\s*", args)] if args else ["void"]
    rows, cur = [], head
    for n, p in enumerate(parts):
        piece = p + (", " if n + 1 < len(parts) else ");")
        if len(cur) + len(piece.rstrip()) > 78 and cur.strip() and not cur.endswith("("):
            rows.append(cur.rstrip())
            cur = " " * len(head)
        cur += piece
    rows.append(cur)
    out = []
    for r in rows:
        r = esc(r)
        out.append(line(r.replace(esc(name) + "(", "\\fB" + esc(name) + "\\fP(", 1)))
    return out


def split_returns(comment):
    """(description lines, return-value lines): the split is at the first indented line that
    starts the aligned list of outcomes (TF_OK / TF_ERR_...)."""
    for n, s in enumerate(comment):
        if re.match(r"\s{2,}(TF_OK|TF_ERR_|TF_DONE|TF_AGAIN|TF_ERROR|TF_IO_)", s):
            return comment[:n], comment[n:]
    return comment, []


def render_text(lines_):
    """Comment lines to roff: prose filled, indented runs (lists, code) kept as they are."""
    out, pre = [], False
    for s in lines_:
        if not s.strip():
            if pre:
                out += [".fi", ".RE"]
                pre = False
            out.append(".PP")
            continue
        indented = s.startswith("  ")
        if indented and not pre:
            out += [".RS 2", ".nf"]
            pre = True
        elif not indented and pre:
            out += [".fi", ".RE", ".PP"]
            pre = False
        if pre:
            out.append(line(params(esc(s[2:]))))
        else:
            out.append(line(params(esc(s.strip()))))
    if pre:
        out += [".fi", ".RE"]
    return out


def summary(comment):
    """The NAME line's text: the comment's first sentence, shortened for whatis."""
    text = " ".join(s.strip() for s in comment if s.strip())
    text = re.sub(r"\|([^|]+)\|", r"\1", text)
    short = text
    while True:  # asides out first (they hold "e.g." and "incl." that look like full stops)
        nxt = re.sub(r" ?\([^()]*\)", "", short)
        if nxt == short:
            break
        short = nxt
    m = re.match(r"(.+?[.;])(\s|$)", short)
    s = m.group(1).rstrip(".;") if m else short
    if len(s) > 75:
        cut = re.match(r"(.{20,75}?)(: |; |, )", s)
        s = cut.group(1).rstrip() if cut else s[:72].rsplit(" ", 1)[0] + "..."
    if len(s) > 1 and s[0].isupper() and (s[1].islower() or s[1] == " "):
        s = s[0].lower() + s[1:]
    return s


def th(name, section, version, date):
    # .nh: no hyphenation (a function name split at a line end reads as two words).
    return '.TH %s %s "%s" "tcpframe %s" "tcpframe Manual"\n.nh' % (
        esc(name.upper()), section, date, version)


def function_page(d, all_names, version, date):
    g = d.group
    desc, rets = split_returns(d.comment)
    out = [".\\\" Generated by scripts/gen-man.py from %s: edit the header."
           % d.path, th(d.name, 3, version, date), ".SH NAME",
           line("%s \\- %s" % (", ".join(esc(x.name) for x in g), esc(summary(d.comment))))]
    out += [".SH LIBRARY", LIBRARY.get(d.header, LIBRARY_DEFAULT)]
    out += [".SH SYNOPSIS", ".nf", "\\fB#include <tcpframe/%s>\\fP" % esc(d.header)]
    for x in g:
        out.append("")
        out += fmt_proto(*x.proto)
        if x.macro:
            out.append(line(esc(x.macro)))
    out += [".fi", ".SH DESCRIPTION"]
    out += render_text(desc) if desc else ["See RETURN VALUE."]
    if rets:
        out += [".SH RETURN VALUE"] + render_text(rets)
    out += [".SH NOTES", "The contract of the whole header (threads, ownership, the mode of"
            " operation) is in its opening comment, summarised in",
            ".BR tcpframe (7);", "the exact rules are in SPEC.md of the source tree."]
    words = set(re.findall(r"\btf_[a-z0-9_]*[a-z0-9]", " ".join(d.comment)))
    seen = [x.name for x in g]
    also = sorted(w for w in words if w in all_names and w not in seen)
    also = [x.name for x in g if x.name != d.name] + also
    refs = [".BR %s (3)," % esc(a) for a in also] + [".BR tcpframe (7)"]
    out += [".SH SEE ALSO"] + refs
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- tcpframe(7)

def md_to_roff(md_lines):
    """The Markdown of README.md and SPEC.md that these sections use: ### headings, paragraphs,
    indented code, pipe tables, - bullets, inline code/bold/links."""
    out, i = [], 0
    while i < len(md_lines):
        s = md_lines[i]
        if not s.strip():
            i += 1
            continue
        if s.startswith("#"):
            out += [".SS " + inline_md(s.lstrip("#").strip())]
            i += 1
        elif s.startswith("    "):
            block = []
            while i < len(md_lines) and (md_lines[i].startswith("    ") or not md_lines[i].strip()):
                block.append(md_lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += [".PP", ".RS 2", ".nf"] + [line(esc(b)) for b in block] + [".fi", ".RE"]
        elif s.startswith("|"):
            rows = []
            while i < len(md_lines) and md_lines[i].startswith("|"):
                cells = [c.strip().replace("`", "") for c in md_lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            w = [max(len(r[k]) for r in rows if k < len(r)) for k in range(len(rows[0]))]
            out += [".PP", ".RS 2", ".nf"]
            for r in rows:
                out.append(line(esc("  ".join(c.ljust(w[k]) for k, c in enumerate(r)).rstrip())))
            out += [".fi", ".RE"]
        elif s.startswith("- "):
            while i < len(md_lines) and md_lines[i].startswith("- "):
                item = [md_lines[i][2:].strip()]
                i += 1
                while i < len(md_lines) and md_lines[i].startswith("  ") and md_lines[i].strip():
                    item.append(md_lines[i].strip())
                    i += 1
                out += [".IP \\(bu 2", line(inline_md(" ".join(item)))]
        else:
            para = []
            while (i < len(md_lines) and md_lines[i].strip()
                   and not md_lines[i].startswith(("#", "    ", "|", "- "))):
                para.append(md_lines[i].strip())
                i += 1
            out += [".PP", line(inline_md(" ".join(para)))]
    return out


def md_section(path, start, stop):
    """Lines of a Markdown file from the line matching |start| up to the one matching |stop|."""
    lines_ = open(path, encoding="utf-8").read().split("\n")
    a = next(n for n, s in enumerate(lines_) if re.match(start, s))
    b = next(n for n, s in enumerate(lines_[a + 1:], a + 1) if re.match(stop, s))
    return lines_[a + 1: b]


def errors_list():
    text = open(os.path.join(INC, "err.h"), encoding="utf-8").read()
    return re.findall(r'X\((\w+), (\d+), "([^"]*)"\)', text)


def overview_page(headers, decls, version, date):
    out = [".\\\" Generated by scripts/gen-man.py from README.md, SPEC.md and the headers.",
           th("tcpframe", 7, version, date), ".SH NAME",
           "tcpframe \\- message framing over TCP with a proved core (uniflow's wire format)",
           ".SH SYNOPSIS", ".nf"]
    out += ["\\fB#include <tcpframe/%s>\\fP" % esc(h) for h, _, _ in headers if h != "export.h"]
    out += ["", "cc app.c $(pkg-config \\-\\-cflags \\-\\-libs tcpframe)",
            "find_package(tcpframe CONFIG REQUIRED)   # CMake: tcpframe::tcpframe,"
            " tcpframe::tcpframe_static",
            "cc app.c $(pkg-config \\-\\-cflags \\-\\-static \\-\\-libs tcpframe-tls)"
            "   # TLS (tcpframe/tls.h)",
            "find_package(tcpframe CONFIG REQUIRED COMPONENTS tls)   # CMake: tcpframe::tls",
            ".fi", ".SH DESCRIPTION"]
    intro = md_section(os.path.join(TOP, "README.md"), r"^# tcpframe", r"^The full contract")
    out += md_to_roff(intro)
    out += [".SH WIRE FORMAT"]
    out += md_to_roff(md_section(os.path.join(TOP, "SPEC.md"), r"^## 2\. Wire format", r"^## 3\."))
    out += [".SH ERRORS", "Every fallible call returns a \\fBtf_err\\fP (include/tcpframe/err.h);"
            " the numbers are ABI.", ".PP", ".RS 2", ".nf"]
    for nm, num, text in errors_list():
        label = "TF_OK" if nm == "OK" else "TF_ERR_" + nm
        out.append(line(esc("%-24s %3s  %s" % (label, num, text))))
    out += [".fi", ".RE", ".SH HEADERS"]
    for h, opening, hdecls in headers:
        if not hdecls:
            continue
        out += [".SS <tcpframe/%s>" % esc(h)]
        body = opening[1:] if opening and opening[0].startswith("tcpframe/") else opening
        first = opening[0].split("--", 1)[-1].strip() if opening else ""
        out += [line(params(esc(first)))] if first else []
        out += render_text(body)
        out += [".PP", "Functions: " + ", ".join(
            "\\fB%s\\fP(3)" % esc(d.name) for d in hdecls) + "."]
    out += [".SH SEE ALSO", ".BR tfcat (1)"]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(TOP, "build", "man"))
    a = ap.parse_args()
    vh = open(os.path.join(INC, "version.h"), encoding="utf-8").read()
    version = ".".join(re.search(r"#define TF_VERSION_%s (\d+)" % p, vh).group(1)
                       for p in ("MAJOR", "MINOR", "PATCH"))
    date = ""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        import time
        date = time.strftime("%Y-%m-%d", time.gmtime(int(os.environ["SOURCE_DATE_EPOCH"])))
    headers, decls, errors = [], [], []
    for h, hdir in sorted((h, hdir) for hdir in HEADER_DIRS for h in os.listdir(hdir)):
        if h.endswith(".h"):
            opening, d, e = parse_header(os.path.join(hdir, h))
            headers.append((h, opening, d))
            decls += d
            errors += e
    names = {d.name for d in decls}
    dup = sorted(n for n in names if sum(d.name == n for d in decls) > 1)
    errors += ["%s is declared twice" % n for n in dup]
    if errors:
        for e in errors:
            print("gen-man: " + e, file=sys.stderr)
        return 1
    for sub in ("man3", "man7"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)
        for f in os.listdir(os.path.join(a.out, sub)):  # no stale page of a removed function
            os.remove(os.path.join(a.out, sub, f))
    for d in decls:
        with open(os.path.join(a.out, "man3", d.name + ".3"), "w", encoding="utf-8") as f:
            f.write(function_page(d, names, version, date))
    with open(os.path.join(a.out, "man7", "tcpframe.7"), "w", encoding="utf-8") as f:
        f.write(overview_page(headers, decls, version, date))
    print("gen-man: %d pages in %s/man3, tcpframe.7 in %s/man7" % (len(decls), a.out, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
