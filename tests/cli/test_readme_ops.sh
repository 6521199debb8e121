#!/bin/sh
# The README's operator list is `curvscope info --ops` verbatim (the op
# table, sorted by name).  Regenerate it with `make readme-ops` (or
# tools/readme_ops) when an operator is added.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
CS=$top_builddir/curvscope
README=$top_srcdir/README.md

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_readme_ops.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }

"$CS" info --ops >"$tmp/ops"
rc=$?
ok "info --ops exits 0 and lists operators" '[ $rc -eq 0 ] && [ -s "$tmp/ops" ]'
ok "info --ops lists as many operators as the table holds, sorted, each once" \
    '[ "$(sort -u "$tmp/ops" | wc -l)" = "$(wc -l <"$tmp/ops")" ] && sort -c "$tmp/ops"'
ok "info --ops lists Conv with its derivative rules" 'grep -q "^Conv  *1  vjp jvp rop$" "$tmp/ops"'
awk '/^<!-- operators: begin/ { on = 1; next } /^<!-- operators: end/ { on = 0 } on && !/^```/' \
    "$README" >"$tmp/readme_ops"
ok "the README has an operator list" '[ -s "$tmp/readme_ops" ]'
if cmp -s "$tmp/ops" "$tmp/readme_ops"; then
    ok "the README's operator list equals info --ops" true
else
    diff "$tmp/readme_ops" "$tmp/ops" | sed 's/^/# /' | head -n 40
    ok "the README's operator list equals info --ops (run: make readme-ops)" false
fi
echo "1..$n"
