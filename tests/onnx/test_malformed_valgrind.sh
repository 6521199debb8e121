#!/bin/sh
# Runs the malformed-model test and the data reader test under valgrind
# memcheck: any invalid read or write, use of uninitialised memory or
# definite leak fails.  One TAP line per binary.  Skipped when valgrind is
# not installed.  test_malformed runs its quick variant (fewer bit flips) to
# keep this under a minute or so.

top_builddir=${top_builddir:-.}
vg=${VALGRIND:-}
if [ -z "$vg" ]; then
    vg=$(command -v valgrind 2>/dev/null)
fi
if [ -z "$vg" ] || ! [ -x "$vg" ]; then
    echo "1..0 # SKIP valgrind not installed"
    exit 0
fi

tmp=$(mktemp "${TMPDIR:-/tmp}/cs_valgrind.XXXXXX") || {
    echo "1..0 # SKIP cannot create a temporary file"
    exit 0
}
trap 'rm -f "$tmp"' EXIT INT TERM

n=0
for rel in tests/onnx/test_malformed tests/data/test_data; do
    n=$((n + 1))
    bin=$top_builddir/$rel
    if ! [ -x "$bin" ]; then
        echo "ok $n - $rel under valgrind # SKIP $bin not built"
        continue
    fi
    CS_MALFORMED_QUICK=1 "$vg" --error-exitcode=99 --leak-check=full \
        --errors-for-leak-kinds=definite -q "$bin" >"$tmp" 2>&1
    rc=$?
    failed=$(grep -c '^not ok' "$tmp")
    planned=$(grep -c '^1\.\.[0-9]' "$tmp")
    if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$planned" -ge 1 ]; then
        echo "ok $n - $rel under valgrind"
    else
        echo "not ok $n - $rel under valgrind (exit $rc, $failed failed checks, plan seen: $planned)"
        # The failing checks and valgrind's report, as TAP comments.
        grep -v '^ok ' "$tmp" | tail -n 60 | sed 's/^/# /'
    fi
done
echo "1..$n"
exit 0
