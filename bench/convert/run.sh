#!/usr/bin/env bash
# bench/convert/run.sh: `govisor image convert` against `qemu-img convert`,
# side by side on the same inputs, for qcow2->raw, raw->qcow2, compressed
# qcow2, vmdk->qcow2 and qcow2->vhdx (pairs whose format govisor does not
# support are skipped). Prints seconds, throughput (virtual MiB/s) and the
# govisor/qemu-img throughput ratio (>1: govisor is faster). Both tools
# are timed up to a `sync -f` of their output (govisor fdatasyncs on close,
# qemu-img does not), each run REPS times, fastest kept. Each govisor
# output is checked equal to the input with qemu-img compare.
#
# Environment: SPARSE_SIZE (default 2G, 12.5% allocated), DENSE_SIZE
# (default 1G, fully allocated, half compressible), REPS (runs per tool,
# the fastest counts; default 2), WORKERS (govisor -W,
# default nproc), BENCH_DIR (default a new directory under /var/tmp),
# PAIRS (default "qcow2-raw raw-qcow2 raw-qcow2c vmdk-qcow2 qcow2-vhdx").
set -euo pipefail
cd "$(dirname "$0")/../.."
SPARSE_SIZE=${SPARSE_SIZE:-2G}
DENSE_SIZE=${DENSE_SIZE:-1G}
WORKERS=${WORKERS:-$(nproc)}
REPS=${REPS:-2}
PAIRS=${PAIRS:-"qcow2-raw raw-qcow2 raw-qcow2c vmdk-qcow2 qcow2-vhdx"}
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/govisor-bench.XXXXXX)}
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
command -v qemu-img >/dev/null || { echo "qemu-img missing: run scripts/deps.sh test" >&2; exit 1; }

GOVISOR=$DIR/govisor
echo "building govisor..." >&2
go build -o "$GOVISOR" ./cmd/govisor
go build -o "$DIR/mkinput" ./bench/convert/mkinput

# supported FMT: can this govisor create FMT images?
supported() { "$GOVISOR" image create -f "$1" "$DIR/probe.$1" 1M >/dev/null 2>&1 && rm -f "$DIR/probe.$1"; }

now() { date +%s.%N; }
declare -A VSIZE
echo "making inputs (sparse $SPARSE_SIZE, dense $DENSE_SIZE)..." >&2
for kind in sparse dense; do
  size=$SPARSE_SIZE; [[ $kind == dense ]] && size=$DENSE_SIZE
  "$DIR/mkinput" -kind $kind -size "$size" -o "$DIR/$kind.raw"
  VSIZE[$kind]=$(stat -c %s "$DIR/$kind.raw")
done

# input KIND FMT: the input file of KIND in FMT (made once with qemu-img).
input() {
  local f=$DIR/$1.$2
  if [[ ! -e $f ]]; then
    case $2 in
      raw) ;;
      vmdk) qemu-img convert -O vmdk -o subformat=monolithicSparse "$DIR/$1.raw" "$f" ;;
      *) qemu-img convert -O "$2" "$DIR/$1.raw" "$f" ;;
    esac
  fi
  echo "$f"
}

printf '%-12s %-6s %9s %9s %10s %10s %7s\n' pair input govisor_s qemu_s gov_MiB/s qemu_MiB/s ratio
for pair in $PAIRS; do
  in=${pair%%-*}; out=${pair#*-}; extra=(); qextra=()
  if [[ $out == qcow2c ]]; then out=qcow2; extra=(-c); qextra=(-c); fi
  qfmt=$out; [[ $out == vhd ]] && qfmt=vpc
  if ! supported "$in" || ! supported "$out"; then
    printf '%-12s skipped: govisor does not support %s yet\n' "$pair" "$in/$out"; continue
  fi
  for kind in sparse dense; do
    src=$(input $kind "$in")
    cat "$src" >/dev/null  # both tools start with a warm page cache
    g=999999; q=999999
    for ((rep = 0; rep < REPS; rep++)); do
      rm -f "$DIR/gov.out" "$DIR/qemu.out"
      t0=$(now)
      "$GOVISOR" image convert -O "$out" "${extra[@]}" -W "$WORKERS" "$src" "$DIR/gov.out"
      sync -f "$DIR/gov.out"
      t1=$(now)
      qemu-img convert -O "$qfmt" "${qextra[@]}" "$src" "$DIR/qemu.out"
      sync -f "$DIR/qemu.out"
      t2=$(now)
      g=$(echo "if ($t1 - $t0 < $g) $t1 - $t0 else $g" | bc)
      q=$(echo "if ($t2 - $t1 < $q) $t2 - $t1 else $q" | bc)
    done
    if ! qemu-img compare -q "$src" "$DIR/gov.out"; then
      echo "MISMATCH: govisor output of $pair/$kind differs from its input" >&2; exit 1
    fi
    awk -v p="$pair" -v k="$kind" -v s="${VSIZE[$kind]}" -v g="$g" -v q="$q" \
      'BEGIN { printf "%-12s %-6s %9.2f %9.2f %10.0f %10.0f %6.2fx\n", p, k, g, q, s/1048576/g, s/1048576/q, q/g }'
    rm -f "$DIR/gov.out" "$DIR/qemu.out"
  done
done
