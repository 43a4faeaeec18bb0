#!/usr/bin/env bash
# Runs every Go fuzz target under ./internal/... for a bounded time each
# (FUZZTIME, default 20s; a count such as 5000x works too) and prints a
# summary. `make chaos` calls it; `make test` already runs each target's
# seed corpus as an ordinary test.
#
# A target that finds a failing input makes the script exit 1; Go keeps the
# input under <package>/testdata/fuzz/<Target>/ and the summary names it.
# Re-run it with: go test -run '<Target>/<file>' <package>
#
# Environment:
#   FUZZTIME     time (or NNNx runs) per target; default 20s
#   FUZZTIMEOUT  go test -timeout per target; default 30m
#   FUZZ         only targets whose name matches this regexp
# Arguments: package patterns instead of ./internal/...
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:${PATH}"

fuzztime="${FUZZTIME:-20s}"
timeout="${FUZZTIMEOUT:-30m}"
only="${FUZZ:-.}"
if [[ $# -gt 0 ]]; then
	pkgs=("$@")
else
	pkgs=(./internal/...)
fi

# `go test -list` prints a package's matching names, then its "ok" line.
if ! listing="$(go test -list '^Fuzz' "${pkgs[@]}" 2>&1)"; then
	printf '%s\n' "$listing" >&2
	echo "fuzz.sh: listing the fuzz targets failed" >&2
	exit 1
fi
targets=()
names=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*)
		names+=("$line")
		;;
	ok*)
		pkg="$(awk '{print $2}' <<<"$line")"
		for n in "${names[@]}"; do
			if [[ "$n" =~ $only ]]; then
				targets+=("$pkg $n")
			fi
		done
		names=()
		;;
	esac
done <<<"$listing"

if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz.sh: no fuzz targets found in ${pkgs[*]}" >&2
	exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${fuzztime} each"

# corpus lists the inputs Go has kept for a target.
corpus() {
	local dir="$1/testdata/fuzz/$2"
	if [[ -d "$dir" ]]; then
		find "$dir" -type f | sort
	fi
}

log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT
summary=()
failed=0
for t in "${targets[@]}"; do
	pkg="${t% *}"
	name="${t#* }"
	dir="$(go list -f '{{.Dir}}' "$pkg")"
	before="$(corpus "$dir" "$name")"
	out="$log/$name.out"
	start=$SECONDS
	echo "=== ${pkg} ${name}"
	status=0
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -timeout "$timeout" "$pkg" >"$out" 2>&1 || status=$?
	took=$((SECONDS - start))
	new="$(comm -13 <(printf '%s\n' "$before") <(corpus "$dir" "$name") | sed '/^$/d')"
	if [[ $status -eq 0 ]]; then
		result="ok"
	elif [[ -n "$new" ]]; then
		result="FAIL"
	elif grep -q 'context deadline exceeded' "$out" && ! grep -q -- '--- FAIL: .*/' "$out"; then
		# go.dev/issue/75804 (fixed in Go 1.27): the coordinator may report
		# its own -fuzztime deadline as a failure. No input failed.
		result="flake (go.dev/issue/75804, no failing input)"
	else
		result="FAIL"
	fi
	if [[ "$result" == FAIL ]]; then
		failed=$((failed + 1))
		tail -n 40 "$out"
		if [[ -n "$new" ]]; then
			while IFS= read -r f; do
				result+=" -> ${f#"$PWD"/}"
			done <<<"$new"
		fi
	elif [[ "$result" == ok ]]; then
		tail -n 1 "$out"
	else
		tail -n 3 "$out"
	fi
	summary+=("$(printf '%-28s %-30s %4ss  %s' "$pkg" "$name" "$took" "$result")")
done

echo
echo "fuzz.sh summary (${fuzztime} per target):"
printf '  %s\n' "${summary[@]}"
if [[ $failed -gt 0 ]]; then
	echo "fuzz.sh: ${failed} of ${#targets[@]} targets failed; failing inputs are kept under testdata/fuzz" >&2
	exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets passed"
