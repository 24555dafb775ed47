#!/usr/bin/env bash
# Builds the offline Go vulnerability database that `make vulncheck` hands to
# govulncheck as -db file://OUTDIR:
#   hack/govulncheck/db.sh INDEXDB OUTDIR
# INDEXDB is golang.org/x/vulndb/cmd/indexdb; it turns the OSV reports that the
# pinned golang.org/x/vulndb module ships (data/osv/*.json, fetched through the
# Go module proxy like any module) into the v1 layout govulncheck reads:
# index/db.json, index/modules.json, index/vulns.json and ID/<id>.json.
#
# The build takes seconds but is skipped when OUTDIR/.version records the
# pinned vulndb version; bumping golang.org/x/vulndb in go.mod rebuilds it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
indexdb="$1"
out="$2"

ver="$(cd "$here" && go list -m -f '{{.Version}}' golang.org/x/vulndb)"
stamp="$out/.version"
if [[ -f $stamp && "$(cat "$stamp")" == "$ver" && -f $out/index/db.json ]]; then
	echo "vulnerability database up to date in $out (golang.org/x/vulndb $ver)"
	exit 0
fi

src="$(cd "$here" && go mod download golang.org/x/vulndb && go list -m -f '{{.Dir}}' golang.org/x/vulndb)"
[[ -d $src/data/osv ]] || { echo "hack/govulncheck/db.sh: no data/osv in golang.org/x/vulndb $ver ($src)" >&2; exit 1; }

tmp="$out.tmp"
rm -rf "$tmp"
"$indexdb" -vulns "$src/data/osv" -out "$tmp"
printf '%s\n' "$ver" >"$tmp/.version"
rm -rf "$out"
mv "$tmp" "$out"
echo "vulnerability database built in $out (golang.org/x/vulndb $ver, $(find "$out/ID" -name '*.json' | wc -l) reports)"
