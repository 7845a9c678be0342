#!/usr/bin/env bash
# Detection rate and false-positive rate of `hatrack check` on the corpora in tests/corpus,
# from each file's `# expect:` lines (FILE.expect for JSON):
#   detection rate      = workloads expected to have findings that get at least one finding
#                         (and, stricter, exactly the expected rules) / those workloads
#   false-positive rate = workloads expected clean that get any finding / clean workloads
# reported for the whole corpus and for the false-positive corpus alone (file 60-…).
#
#   scripts/detection-rates.sh [BIN]     (default target/debug/hatrack; build it first)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/hatrack}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# One file at a time: each file's Secrets and ConfigMaps are its own cluster state (as in
# tests/check_corpus.rs); several files reuse names.
for f in tests/corpus/*.yaml tests/corpus/*.json; do
  set +e
  "$BIN" check --format json "$f" >"$OUT/$(basename "$f").out"
  code=$?
  set -e
  if [ "$code" -gt 1 ]; then echo "hatrack check $f failed with exit $code" >&2; exit 2; fi
done
python3 - "$OUT" <<'PY'
import collections, glob, json, os, re, sys
report = {"results": [], "errors": []}
for out in sorted(glob.glob(os.path.join(sys.argv[1], "*.out"))):
    part = json.load(open(out))
    report["results"] += part["results"]
    report["errors"] += part.get("errors", [])
if report.get("errors"):
    sys.exit(f"input errors: {report['errors']}")
expect = {}
for path in sorted(glob.glob("tests/corpus/*")):
    if path.endswith(".md") or path.endswith(".rs"):
        continue
    src = path + ".expect" if path.endswith(".json") else path
    if path.endswith(".expect"):
        continue
    for line in open(src):
        m = re.match(r"#?\s*expect:\s+(\S+)\s+(\S+)\s+(\S+)\s*(.*)", line.strip())
        if m:
            kind, nsname, verdict, rules = m.groups()
            expect[(os.path.basename(path), kind, nsname)] = sorted(rules.split())
got = {}
for r in report["results"]:
    key = (os.path.basename(r["file"]), r["kind"], f"{r['namespace']}/{r['name']}")
    got[key] = sorted(f["rule"] for f in r["findings"])
missing = [k for k in expect if k not in got]
if missing:
    sys.exit(f"not judged: {missing}")
def rates(keys):
    pos = [k for k in keys if expect[k]]
    neg = [k for k in keys if not expect[k]]
    found = [k for k in pos if got[k]]
    exact = [k for k in pos if got[k] == expect[k]]
    fps = [k for k in neg if got[k]]
    return pos, neg, found, exact, fps
def pct(a, b):
    return f"{100.0 * a / b:.1f}%" if b else "n/a"
for title, keys in [
    ("whole corpus", list(expect)),
    ("false-positive corpus (60-false-positive-corpus.yaml)", [k for k in expect if k[0].startswith("60-")]),
]:
    pos, neg, found, exact, fps = rates(keys)
    print(f"{title}: files {len({k[0] for k in keys})}, workloads {len(keys)}")
    if pos:
        print(f"  detection rate: {len(found)}/{len(pos)} = {pct(len(found), len(pos))} (exact rules: {len(exact)}/{len(pos)} = {pct(len(exact), len(pos))})")
    print(f"  false-positive rate: {len(fps)}/{len(neg)} = {pct(len(fps), len(neg))}")
    for k in fps:
        print(f"    flagged: {k} {got[k]}")
    for k in pos:
        if not got[k]:
            print(f"    missed: {k} expected {expect[k]}")
PY
