#!/bin/sh
# The man page covers every command and every option that `--help` lists,
# and groff formats it without warnings.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
CS=$top_builddir/curvscope
MAN=$top_srcdir/doc/curvscope.1
n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }

ok "the man page exists" '[ -f "$MAN" ]'
# Options as the man page spells them once formatted: \- is a plain -.
text=$(sed 's/\\-/-/g' "$MAN")
for cmd in info eval run analyze finetune compare quantize laplace influence; do
    ok "section for $cmd" 'printf "%s\n" "$text" | grep -q "^\.SS $cmd\$"'
    missing=""
    for opt in $("$CS" $cmd --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sort -u); do
        printf '%s\n' "$text" | grep -qE -- "$opt([^a-z-]|\$)" || missing="$missing $opt"
    done
    ok "every option of '$cmd --help' is in the man page${missing:+ (missing:$missing)}" '[ -z "$missing" ]'
    # and the command accepts it (a value missing or the model missing is
    # fine here; an unknown option is not)
    refused=""
    for opt in $("$CS" $cmd --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sort -u); do
        [ "$opt" = --help ] && continue
        "$CS" $cmd "$opt" 2>&1 | grep -q "unknown option" && refused="$refused $opt"
    done
    ok "every option of '$cmd --help' is accepted by '$cmd'${refused:+ (refused:$refused)}" '[ -z "$refused" ]'
done
ok "the exit codes are documented" 'printf "%s\n" "$text" | grep -q "^\.SH EXIT STATUS"'
if command -v groff >/dev/null 2>&1; then
    warnings=$(groff -man -ww -z -Tutf8 "$MAN" 2>&1)
    ok "groff formats it without warnings${warnings:+ ($warnings)}" '[ -z "$warnings" ]'
else
    n=$((n + 1)); echo "ok $n # SKIP groff is not installed"
fi
echo "1..$n"
exit 0
