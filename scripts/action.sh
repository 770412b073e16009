#!/usr/bin/env bash
# The shell side of action.yml (the corematrix GitHub action), kept here so it can be tested
# (test/matrix/action.test.ts). Two steps:
#
#   action.sh setup   make /dev/kvm usable when the runner has one, install the Debian packages
#                     corematrix drives (scripts/setup.mjs), `npm ci` in the action's own folder
#   action.sh run     `corematrix matrix` with the inputs mapped to its options, run in the caller's
#                     workspace; the summary (and the baseline comparison) appended to
#                     $GITHUB_STEP_SUMMARY; exits with corematrix's status (0 pass, 1 fail, 2 usage)
#
# Inputs arrive as INPUT_<NAME> variables (action.yml maps each one; composite actions do not).
# COREMATRIX_ACTION_DRY_RUN=1 prints every command that would change the machine, install
# something or boot a guest, and runs none of them. COREMATRIX_ACTION_KVM names the KVM device
# (default /dev/kvm), for tests.
set -euo pipefail
export LC_ALL=C # glob order and messages the same on every runner

ACTION_PATH=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY_RUN=${COREMATRIX_ACTION_DRY_RUN:-}
KVM=${COREMATRIX_ACTION_KVM:-/dev/kvm}
KVM_RULE='KERNEL=="kvm", GROUP="kvm", MODE="0666"'
KVM_RULES_FILE=/etc/udev/rules.d/99-corematrix-kvm.rules
# GitHub refuses a step summary over 1 MiB; keep below it and point to the artifact instead.
SUMMARY_LIMIT=1000000

log() { printf 'corematrix-action: %s\n' "$*" >&2; }
die() { # one line, then exit with the given status
  local code=$1; shift
  printf '::error::corematrix-action: %s\n' "$*" >&2
  exit "$code"
}
# Words as a shell would need them: plain when safe, else in single quotes.
quoted() {
  local w out=
  for w in "$@"; do
    if [[ $w =~ ^[A-Za-z0-9_./=:@%+,-]+$ ]]; then out+=" $w"; else out+=" '${w//\'/\'\\\'\'}'"; fi
  done
  printf '%s' "${out# }"
}
join_commas() { local IFS=,; printf '%s' "$*"; }
output() { # a step output, when the runner asks for them
  if [ -n "${GITHUB_OUTPUT:-}" ]; then printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"; fi
}
# Runs a command, or in a dry run prints it (shell-quoted) instead.
act() {
  if [ -n "$DRY_RUN" ]; then printf '%s\n' "$(quoted "$@")"; else "$@"; fi
}

# ---------------------------------------------------------------------------------------------
# setup

# The command prefix that runs something as root here: nothing as root, `sudo -n` where sudo
# works without a password (GitHub's hosted runners), else no way (returns 1).
root_prefix() {
  if [ "$(id -u)" -eq 0 ]; then ROOT=(); return 0; fi
  if command -v sudo >/dev/null && { [ -n "$DRY_RUN" ] || sudo -n true 2>/dev/null; }; then ROOT=(sudo -n); return 0; fi
  return 1
}

# On GitHub's hosted VMs /dev/kvm exists but the runner's user cannot open it: the udev rule GitHub
# documents for them opens it to everyone. Whether guests then use KVM is corematrix's
# own probe's call (--accel auto boots a probe guest first); here we only make the device usable.
enable_kvm() {
  if [ ! -e "$KVM" ]; then
    log "no $KVM on this runner: guests run under TCG"
    return 0
  fi
  if [ -r "$KVM" ] && [ -w "$KVM" ]; then
    log "$KVM is usable; corematrix's accelerator probe decides whether guests use it"
    return 0
  fi
  local -a ROOT
  if ! root_prefix; then
    log "$KVM is not usable by $(id -un) and there is no root (no sudo): guests run under TCG"
    return 0
  fi
  if ! command -v udevadm >/dev/null; then
    log "$KVM is not usable by $(id -un) and there is no udevadm to change that: guests run under TCG"
    return 0
  fi
  if [ -n "$DRY_RUN" ]; then
    printf '%s <<< %s\n' "$(quoted "${ROOT[@]}" tee "$KVM_RULES_FILE")" "$(quoted "$KVM_RULE")"
  else
    printf '%s\n' "$KVM_RULE" | "${ROOT[@]}" tee "$KVM_RULES_FILE" >/dev/null
  fi
  act "${ROOT[@]}" udevadm control --reload-rules
  act "${ROOT[@]}" udevadm trigger --name-match=kvm
  if [ -z "$DRY_RUN" ]; then
    if [ -r "$KVM" ] && [ -w "$KVM" ]; then log "$KVM made usable (udev rule $KVM_RULES_FILE)"
    else log "$KVM is still not usable after the udev rule: guests run under TCG"; fi
  fi
}

# scripts/setup.mjs holds the package list: as root it installs what is missing; otherwise it
# exits 2 printing the exact apt-get command, which runs through sudo (as the nightly does).
install_packages() {
  local setup="$ACTION_PATH/scripts/setup.mjs"
  if [ "$(id -u)" -eq 0 ]; then
    act node "$setup"
    return 0
  fi
  # Not root: setup.mjs only reads, so a dry run runs it too.
  local out cmd
  if out=$(node "$setup" 2>&1); then printf '%s\n' "$out" >&2; return 0; fi
  cmd=$(printf '%s\n' "$out" | sed -n 's/^  \(apt-get update && .*\)$/\1/p')
  [ -n "$cmd" ] || { printf '%s\n' "$out" >&2; die 1 "scripts/setup.mjs failed without an apt-get command to run"; }
  local -a ROOT
  root_prefix || die 1 "Debian packages are missing and there is no root (no sudo) to install them: $cmd"
  act "${ROOT[@]}" sh -c "$cmd"
  act node "$setup"
}

# The action's own dependencies, in the action's own folder; npm runs no install scripts (.npmrc),
# so dist/ is built here, from the action's folder (the build resolves its entries from there).
install_node_modules() {
  act npm --prefix "$ACTION_PATH" ci --no-audit --no-fund
  if [ -z "$DRY_RUN" ] && [ ! -f "$ACTION_PATH/dist/corematrix.cjs" ]; then (cd "$ACTION_PATH" && node scripts/build.mjs); fi
}

cache_dir() { printf '%s' "${COREMATRIX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/corematrix}"; }

# The cache key's fixed part: the kernels asked for (a key may not hold a comma).
cache_prefix() {
  local kernels=${INPUT_KERNELS:-all}
  kernels=$(printf '%s' "$kernels" | tr -s ', \t\n' '----' | tr -c 'A-Za-z0-9._-' '_')
  printf 'corematrix-%s-%s-' "${RUNNER_OS:-Linux}" "${kernels:0:200}"
}

cmd_setup() {
  enable_kvm
  install_packages
  install_node_modules
  output cache-dir "$(cache_dir)"
  output cache-prefix "$(cache_prefix)"
}

# ---------------------------------------------------------------------------------------------
# run

# Splits an input into words on blanks and newlines (and commas with `,`) into WORDS.
split() {
  local text=$1
  [ "${2:-}" = , ] && text=${text//,/ }
  WORDS=()
  read -r -d '' -a WORDS <<<"$text" || true
}

# The inputs as `corematrix matrix` options, in ARGS.
matrix_args() {
  ARGS=(matrix)
  split "${INPUT_KERNELS:-}" ,
  if [ ${#WORDS[@]} -gt 0 ]; then ARGS+=(--kernels "$(join_commas "${WORDS[@]}")"); fi
  split "${INPUT_SUITES:-}" ,
  if [ ${#WORDS[@]} -gt 0 ]; then ARGS+=(--suites "$(join_commas "${WORDS[@]}")"); fi
  if [ -n "${INPUT_SUITES_DIR:-}" ]; then ARGS+=(--suites-dir "$INPUT_SUITES_DIR"); fi

  # Objects: paths or globs (** too), expanded here in the working directory. A glob that matches
  # nothing is an error (a build that produced no object must not pass); a plain path goes to
  # corematrix as written, which names it if it is missing.
  local pattern match
  local -a matches
  split "${INPUT_OBJECTS:-}"
  shopt -s nullglob globstar
  for pattern in "${WORDS[@]}"; do
    if [[ $pattern == *[*?[]* ]]; then
      # shellcheck disable=SC2206 # the expansion is the point
      matches=($pattern)
      [ ${#matches[@]} -gt 0 ] || die 2 "objects: '$pattern' matches no file in $PWD"
      for match in "${matches[@]}"; do ARGS+=(--object "$match"); done
    else
      ARGS+=(--object "$pattern")
    fi
  done
  shopt -u nullglob globstar

  split "${INPUT_OBJECT_CONFIGS:-}"
  for pattern in "${WORDS[@]}"; do ARGS+=(--object-config "$pattern"); done
  split "${INPUT_MODULES:-}" ,
  for pattern in "${WORDS[@]}"; do ARGS+=(--module "$pattern"); done
  split "${INPUT_CORPUS:-}" ,
  for pattern in "${WORDS[@]}"; do ARGS+=(--corpus "$pattern"); done
  if [ -n "${INPUT_LOADER:-}" ]; then ARGS+=(--loader "$INPUT_LOADER"); fi

  # A baseline that is not there yet (the first run of a workflow that downloads the previous
  # report) is a warning, as in the nightly: the run goes on without a comparison.
  if [ -n "${INPUT_BASELINE:-}" ]; then
    if [ -e "$INPUT_BASELINE" ]; then ARGS+=(--baseline "$INPUT_BASELINE")
    else printf '::warning::corematrix-action: no baseline at %s: nothing to compare with\n' "$INPUT_BASELINE" >&2; fi
  fi

  ARGS+=(--accel "${INPUT_ACCEL:-auto}")
  if [ -n "${INPUT_CPUS:-}" ]; then ARGS+=(--cpus "$INPUT_CPUS"); fi
  if [ -n "${INPUT_MEMORY:-}" ]; then ARGS+=(--memory "$INPUT_MEMORY"); fi
  if [ -n "${INPUT_JOBS:-}" ]; then ARGS+=(--jobs "$INPUT_JOBS"); fi
  if [ -n "${INPUT_TIMEOUT:-}" ]; then ARGS+=(--timeout "$INPUT_TIMEOUT"); fi
  ARGS+=(--out "$OUT")

  # Anything else, shell-quoted as on a command line (xargs reads the quotes; nothing is evaluated).
  if [ -n "${INPUT_ARGS:-}" ]; then
    local why
    why=$(printf '%s' "$INPUT_ARGS" | xargs -r true 2>&1) || die 2 "args: cannot split '$INPUT_ARGS' ($(why=${why#xargs: }; printf '%s' "${why%%;*}"))"
    local -a extra
    mapfile -d '' -t extra < <(printf '%s' "$INPUT_ARGS" | xargs -r printf '%s\0')
    ARGS+=("${extra[@]}")
  fi
}

# summary.md (and comparison.md with a baseline) written by THIS run, appended to the step summary.
write_summary() {
  local rc=$1 since=$2
  [ -n "${GITHUB_STEP_SUMMARY:-}" ] || return 0
  local text
  text=$(mktemp)
  {
    if [ -f "$OUT/summary.md" ] && [ "$OUT/summary.md" -nt "$since" ]; then
      cat "$OUT/summary.md"
    else
      printf '## corematrix\n\n`corematrix matrix` exited %s before it wrote a summary; its messages are in the step log.\n' "$rc"
    fi
    if [ -f "$OUT/comparison.md" ] && [ "$OUT/comparison.md" -nt "$since" ]; then
      printf '\n'
      cat "$OUT/comparison.md"
    fi
  } >"$text"
  if [ "$(stat -c %s "$text")" -gt "$SUMMARY_LIMIT" ]; then
    head -c "$SUMMARY_LIMIT" "$text" >>"$GITHUB_STEP_SUMMARY"
    printf '\n\n(summary cut at %s bytes, the step summary limit: the whole of it is summary.md in the report artifact)\n' "$SUMMARY_LIMIT" >>"$GITHUB_STEP_SUMMARY"
  else
    cat "$text" >>"$GITHUB_STEP_SUMMARY"
  fi
  printf '\n' >>"$GITHUB_STEP_SUMMARY" # whatever a later step appends starts on a line of its own
  rm -f "$text"
}

# A name for what the kernel store holds now (its manifests, the built libbpf): the action saves
# the cache only when this differs from the key it restored.
cache_key() {
  local listing
  listing=$(cd "$(cache_dir)" 2>/dev/null && find kernels/manifests libbpf -maxdepth 1 -printf '%p %s\n' 2>/dev/null | sort || true)
  printf '%s%s' "$(cache_prefix)" "$(printf '%s' "$listing" | sha256sum | cut -c1-16)"
}

cmd_run() {
  local workdir=${INPUT_WORKING_DIRECTORY:-${GITHUB_WORKSPACE:-$PWD}}
  cd "$workdir" || die 2 "working-directory: cannot enter $workdir"
  OUT=${INPUT_OUT:-corematrix-report}
  case $OUT in /*) ;; *) OUT="$PWD/$OUT" ;; esac
  local -a ARGS
  matrix_args
  output report-dir "$OUT"
  local -a CMD=(node "$ACTION_PATH/bin/corematrix.js" "${ARGS[@]}")
  if [ -n "$DRY_RUN" ]; then
    act cd "$PWD"
    act "${CMD[@]}"
    output cache-key "$(cache_key)"
    return 0
  fi

  log "in $PWD: $(quoted "${CMD[@]}")"
  local since
  since=$(mktemp)
  # In the background so a cancelled job's SIGTERM reaches corematrix, which then writes a
  # partial report; the summary below is written either way.
  "${CMD[@]}" </dev/null &
  local child=$! rc=0
  trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT
  while :; do
    rc=0
    wait "$child" || rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  trap - TERM INT

  write_summary "$rc" "$since"
  rm -f "$since"
  output exit-code "$rc"
  output cache-key "$(cache_key)"
  case $rc in
    0) log "corematrix matrix passed; reports in $OUT" ;;
    1) printf '::error::corematrix matrix failed (exit 1): see the step summary and the reports in %s\n' "$OUT" >&2 ;;
    2) printf '::error::corematrix matrix did not run (exit 2, bad input): see the messages above\n' >&2 ;;
    *) printf '::error::corematrix matrix ended with exit %s: see the messages above\n' "$rc" >&2 ;;
  esac
  return "$rc"
}

case ${1:-} in
  setup) cmd_setup ;;
  run) cmd_run ;;
  *) printf 'usage: %s setup|run\n' "$0" >&2; exit 2 ;;
esac
