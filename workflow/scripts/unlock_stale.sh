#!/usr/bin/env bash
# `make run` calls this first. A Snakemake that was killed (SIGKILL, a lost terminal, an out-of-memory kill)
# leaves its locks in .snakemake/locks, and every later run stops with "Directory cannot be locked".
# If no Snakemake process works in this folder, those locks are stale: `snakemake --unlock` removes them.
# If one does, they are its own: nothing is removed, and the message says what to do if the run then stops.
# Linux (/proc); `snakemake` is the one on PATH (the Makefile puts the venv's first).
set -euo pipefail

locks=.snakemake/locks
[ -n "$(ls -A "$locks" 2>/dev/null)" ] || exit 0
here=$(pwd -P)

# Is process $1 a Snakemake: `snakemake ...`, `python .../snakemake ...` or `python -m snakemake ...`?
is_snakemake() {
    local -a argv
    mapfile -d '' argv < "/proc/$1/cmdline" 2>/dev/null || return 1
    [[ "$(basename -- "${argv[0]:-x}")" == snakemake || "$(basename -- "${argv[1]:-x}")" == snakemake ]] ||
        [[ "${argv[1]:-}" == -m && "${argv[2]:-}" == snakemake ]]
}

for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$here" ] && is_snakemake "$pid" || continue
    echo "unlock_stale: Snakemake (pid $pid) works in $here, so its locks stay. If this run stops with" \
        "'Directory cannot be locked', wait for that one to finish, or stop it (kill $pid) and run make run again." >&2
    exit 0
done
echo "unlock_stale: no Snakemake works in $here: removing the locks a killed one left (snakemake --unlock)" >&2
snakemake --unlock --cores 1 > /dev/null
