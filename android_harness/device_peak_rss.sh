#!/system/bin/sh
# Device-side peak-RSS recorder (Android toybox/mksh, or any POSIX sh with /proc).
# Usage: device_peak_rss.sh OUT_FILE COMMAND [ARGS...]
# Runs COMMAND in the background, polls /proc/<pid>/status every 20 ms for VmHWM (the kernel's peak resident set
# size of that process, monotonic) and VmRSS, and when COMMAND exits writes to OUT_FILE:
#   pid=<pid>
#   vm_hwm_kb=<largest VmHWM seen>
#   vm_rss_max_kb=<largest VmRSS seen>
#   samples=<number of polls>
#   exit_code=<COMMAND's exit status>
# COMMAND's stdout/stderr pass through unchanged (benchmark_model's own output is parsed on the host).
# Arguments are passed as "$@", never re-split or evaluated.
if [ "$#" -lt 2 ]; then
  echo "usage: $0 OUT_FILE COMMAND [ARGS...]" >&2
  exit 64
fi
out="$1"
shift
"$@" &
pid=$!
hwm=0
rss=0
samples=0
while kill -0 "$pid" 2>/dev/null; do
  if [ -r "/proc/$pid/status" ]; then
    while read -r key value unit; do
      case "$key" in
        VmHWM:) [ "$value" -gt "$hwm" ] 2>/dev/null && hwm=$value ;;
        VmRSS:) [ "$value" -gt "$rss" ] 2>/dev/null && rss=$value ;;
      esac
    done < "/proc/$pid/status"
    samples=$((samples + 1))
  fi
  sleep 0.02 2>/dev/null || sleep 1
done
wait "$pid"
code=$?
{
  echo "pid=$pid"
  echo "vm_hwm_kb=$hwm"
  echo "vm_rss_max_kb=$rss"
  echo "samples=$samples"
  echo "exit_code=$code"
} > "$out"
exit "$code"
