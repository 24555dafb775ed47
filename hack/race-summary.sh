#!/usr/bin/env bash
# race-summary.sh LOG: the data races in a `go test -race` log, each access
# and goroutine with its top frames, printed last when a test run fails.
#
# Why: CI keeps only the tail of a failed run's output. A race report is
# printed where it happens and its tail is the second goroutine's creation
# stack, which names neither access. A race seen once in CI is otherwise
# undiagnosable.
set -euo pipefail
log=${1:?usage: race-summary.sh LOG}
[ -f "$log" ] || exit 0
awk -v max_reports=3 -v max_frames=3 '
/^WARNING: DATA RACE/ {
	race = 1; reports++
	if (reports <= max_reports) print "data race " reports ":"
	next
}
/^==================/ { race = 0; next }
!race || reports > max_reports { next }
/^[A-Z][^ ]* .*:$/ { print "  " $0; frames = 0; next }   # "Write at ... by goroutine 7:", "Goroutine 7 (running) created at:"
/^  [^ ]/ { fn = $1; next }                              # a frame: the function...
/^      / {                                              # ...and its file:line
	if (fn != "" && frames < max_frames) { sub(/^.*\//, "", $1); print "      " fn "  " $1 }
	frames++; fn = ""
}
END { if (reports > max_reports) print "(" reports - max_reports " more data races in " FILENAME ")" }
' "$log"
