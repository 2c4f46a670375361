#!/bin/sh
# Checks tools/long-functions.py itself on a small tree made here: an 81-line function
# fails the check, an 80-line one passes, a lambda counts toward the function around it,
# an allow-list entry lets a long function through, and a stale entry fails the check.
set -eu
checker=${1:?usage: long_functions_selftest.sh tools/long-functions.py}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/core/src"

# body LINES: a function of exactly LINES lines (signature and closing brace included).
body() {
    printf 'int f%s(int x) {\n' "$1"
    i=2
    while [ "$i" -lt "$1" ]; do printf '    x += %s;\n' "$i"; i=$((i + 1)); done
    printf '}\n'
}
fail() { echo "FAIL: $*" >&2; exit 1; }

body 80 > "$work/core/src/a.cpp"
: > "$work/allow"
python3 "$checker" --root "$work" --allow "$work/allow" --check core > "$work/out" ||
    fail "an 80-line function failed the check: $(cat "$work/out")"

body 81 > "$work/core/src/a.cpp"
if python3 "$checker" --root "$work" --allow "$work/allow" --check core > "$work/out"; then
    fail "an 81-line function passed the check"
fi
grep -q "FAIL: core/src/a.cpp f81 is 81 lines" "$work/out" || fail "no FAIL line naming f81: $(cat "$work/out")"

# A lambda's lines belong to its function: 2 + 78 lambda lines + 3 = 83.
{
    printf 'namespace berth::core {\nclass Loop {\n    void run();\n};\nvoid Loop::run() {\n    auto l = [] {\n'
    i=0
    while [ "$i" -lt 78 ]; do printf '        int y = %s; (void)y;\n' "$i"; i=$((i + 1)); done
    printf '    };\n    l();\n}\n}  // namespace berth::core\n'
} > "$work/core/src/a.cpp"
if python3 "$checker" --root "$work" --allow "$work/allow" --check core > "$work/out"; then
    fail "a function made long by its lambda passed the check"
fi
grep -q "FAIL: core/src/a.cpp Loop::run is 83 lines" "$work/out" || fail "Loop::run not reported: $(cat "$work/out")"

echo "core/src/a.cpp Loop::run  # allowed for this test" > "$work/allow"
python3 "$checker" --root "$work" --allow "$work/allow" --check core > "$work/out" ||
    fail "an allow-listed function failed the check: $(cat "$work/out")"

body 10 > "$work/core/src/a.cpp"
if python3 "$checker" --root "$work" --allow "$work/allow" --check core > "$work/out"; then
    fail "a stale allow-list entry passed the check"
fi
grep -q "no longer needed" "$work/out" || fail "stale entry not reported: $(cat "$work/out")"
echo "long-functions checker: all cases behave"
