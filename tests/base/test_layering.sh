#!/bin/sh
# The architecture's one direction of data flow (doc/design.md §5), checked
# on the sources: a directory of src/ includes only headers of directories
# below it in the layering, and no file outside src/interp/ includes the
# operator families' private headers (src/interp/ops/).  One TAP line per
# directory, naming each include that runs back up.
set -u
src="${top_srcdir:-.}/src"
order="base tensor graph onnx data interp objective spectral curv precond finetune quant bayes influence store report cli"

rank() {
  i=0
  for d in $order; do
    [ "$d" = "$1" ] && { echo $i; return; }
    i=$((i + 1))
  done
  echo -1
}

n=0
fail_any=0
for dir in "$src"/*/; do
  d=$(basename "$dir")
  n=$((n + 1))
  r=$(rank "$d")
  if [ "$r" -lt 0 ]; then
    echo "not ok $n - src/$d is not in the layering of doc/design.md §5"
    continue
  fi
  bad=""
  for f in $(find "$dir" -name '*.[ch]'); do
    for t in $(sed -n 's/^#include "\([a-z_]*\)\/.*/\1/p' "$f" | sort -u); do
      [ "$t" = "$d" ] && continue
      tr=$(rank "$t")
      if [ "$tr" -lt 0 ] || [ "$tr" -gt "$r" ]; then
        bad="$bad ${f#"$src"/}->$t"
      fi
    done
    if [ "$d" != interp ] && grep -q '^#include "interp/ops/' "$f"; then
      bad="$bad ${f#"$src"/}->interp/ops(private)"
    fi
  done
  if [ -z "$bad" ]; then
    echo "ok $n - src/$d includes only directories below it"
  else
    echo "not ok $n - src/$d includes upward:$bad"
  fi
done
echo "1..$n"
