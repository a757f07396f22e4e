#!/bin/bash
# `graphcomp train mlp-digits`, whole command, cold (fresh cache folder) then warm (the same
# folder, once its compiling processes have ended), three rounds alternating two checkouts:
#   benchmarks/bench_train_command.sh /path/to/A /path/to/B [python]
# Prints one line per run: round, checkout, cold|warm, wall seconds, accuracy, compile line.
A=$1; B=$2; PY=${3:-python}
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pyc-bench
wait_children() {  # compiling processes started for cache folder $1
  for i in $(seq 1 600); do
    busy=0
    for p in /proc/[0-9]*; do
      if grep -qs "compile_job" $p/cmdline 2>/dev/null && tr '\0' '\n' < $p/environ 2>/dev/null | grep -qx "GRAPHCOMP_CACHE_DIR=$1"; then busy=1; fi
    done
    [ $busy = 0 ] && return
    sleep 1
  done
}
for round in 1 2 3; do
  if [ $((round % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for tree in $order; do
    [ $tree = A ] && path=$A || path=$B
    d=$(mktemp -d)
    for kind in cold warm; do
      out=$(cd /tmp && GRAPHCOMP_CACHE_DIR=$d PYTHONPATH=$path /usr/bin/time -f "TIME %e" $PY -m graphcomp train mlp-digits --no-progress 2>&1)
      t=$(echo "$out" | grep "^TIME" | awk '{print $2}')
      acc=$(echo "$out" | grep "test accuracy" | awk '{print $3}')
      comp=$(echo "$out" | grep "compile time" | cut -c1-140)
      echo "round $round tree $tree $kind $t s acc $acc | $comp"
      wait_children $d
    done
    rm -rf $d
  done
done
