#!/usr/bin/env bash
# selftest.sh runs every UAS scenario in this directory against a SIPp caller
# on 127.0.0.1 (free ports), and uac_options.xml against a SIPp target, and
# checks that both ends exit as intended, plus per-case checks on the
# messages, errors or RTP seen. It needs sipp, python3 and ss.
#
#   testdata/sipp/selftest.sh            all cases
#   testdata/sipp/selftest.sh 407 rtp    only cases whose name contains a word
#   KEEP=1 testdata/sipp/selftest.sh     keep the logs of passing cases too
#
# Exit status 0 when every case passed; the logs of failed cases are kept.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# SIPp 3.6 opens rtp_stream files relative to its working directory.
cd "$here" || exit 2

for tool in sipp python3 ss; do
	command -v "$tool" >/dev/null || { echo "selftest: $tool is not installed" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/sipp-selftest.XXXXXX")
pass=0
fail=0
failed=()
filters=("$@")
during=()

probe() { python3 "$here/selftest/rtp_probe.py" "$@"; }

# alloc sets uport (UAS SIP), cport (UAC SIP), mport (a media port P with P+2
# free, for -mp) and rport (an RTP port for rtp_probe.py).
alloc() { read -r uport cport mport rport <<<"$(probe ports 4)"; }

selected() {
	local f
	[ ${#filters[@]} -eq 0 ] && return 0
	for f in "${filters[@]}"; do
		[[ $1 == *"$f"* ]] && return 0
	done
	return 1
}

# wait_bound PORT: until a process has bound 127.0.0.1:PORT/udp (at most 10 s).
wait_bound() {
	local i
	for i in $(seq 1 200); do
		ss -Huln 2>/dev/null | grep -q "127.0.0.1:$1 " && return 0
		sleep 0.05
	done
	return 1
}

# run NAME WANT_UAS WANT_UAC UAS_SCENARIO [UAS ARGS] -- UAC_SCENARIO [UAC ARGS] [-- CHECK...]
# Uses the ports from the last alloc. Starts the UAS (-m 1), then the
# command in the array `during` (if set) in the background, then the UAC
# (-m 1) against the UAS; waits for all and compares the exit codes. CHECK
# then runs in the case's log directory and must exit 0.
run() {
	local name=$1 want_uas=$2 want_uac=$3
	shift 3
	if ! selected "$name"; then during=(); return 0; fi
	local -a uas=() uac=() check=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do uas+=("$1"); shift; done
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do uac+=("$1"); shift; done
	[ $# -gt 0 ] && { shift; check=("$@"); }

	local dir="$work/$name" note_uac
	mkdir -p "$dir"
	local t0=$SECONDS
	timeout 60 sipp -sf "${uas[0]}" -i 127.0.0.1 -p "$uport" -m 1 -nostdin \
		-trace_err -error_file "$dir/uas_errors.log" -trace_msg -message_file "$dir/uas_messages.log" \
		"${uas[@]:1}" >"$dir/uas.out" 2>&1 &
	local upid=$!
	local dpid=""
	if [ ${#during[@]} -gt 0 ]; then
		"${during[@]}" >"$dir/during.out" 2>&1 &
		dpid=$!
		during=()
	fi
	if ! wait_bound "$uport"; then
		echo "FAIL $name: the UAS did not bind 127.0.0.1:$uport"
		sed 's/^/  /' "$dir/uas.out" | tail -n 5
		kill "$upid" $dpid 2>/dev/null
		wait "$upid" $dpid 2>/dev/null
		fail=$((fail + 1)); failed+=("$name"); return
	fi
	if [[ ${uac[0]} == *.py ]]; then
		timeout 60 python3 "${uac[0]}" "${uac[@]:1}" "$cport" "$uport" >"$dir/uac.out" 2>&1
	else
		timeout 60 sipp -sf "${uac[0]}" -i 127.0.0.1 -p "$cport" -m 1 -nostdin \
			-trace_err -error_file "$dir/uac_errors.log" -trace_msg -message_file "$dir/uac_messages.log" \
			"${uac[@]:1}" "127.0.0.1:$uport" >"$dir/uac.out" 2>&1
	fi
	local got_uac=$?
	[[ ${uac[0]} == *.py ]] && note_uac=$(tr '\n' ' ' <"$dir/uac.out") || note_uac=""
	# The UAS has 15 s to finish once the caller is done.
	local i
	for i in $(seq 1 300); do
		kill -0 "$upid" 2>/dev/null || break
		sleep 0.05
	done
	kill "$upid" 2>/dev/null
	wait "$upid"
	local got_uas=$?
	local during_rc=0 note="$note_uac"
	if [ -n "$dpid" ]; then
		wait "$dpid"
		during_rc=$?
		note=$(tr '\n' ' ' <"$dir/during.out")
	fi
	local check_rc=0
	if [ ${#check[@]} -gt 0 ]; then
		note+=$(cd "$dir" && "${check[@]}" 2>&1)
		check_rc=$?
	fi
	local secs=$((SECONDS - t0))

	local why=""
	[ "$got_uas" = "$want_uas" ] || why+=" UAS exit $got_uas (want $want_uas);"
	[ "$got_uac" = "$want_uac" ] || why+=" UAC exit $got_uac (want $want_uac);"
	[ "$during_rc" = 0 ] || why+=" probe failed;"
	[ "$check_rc" = 0 ] || why+=" check failed;"
	if [ -z "$why" ]; then
		pass=$((pass + 1))
		printf 'ok   %-42s uas=%s uac=%s %3ss %s\n' "$name" "$got_uas" "$got_uac" "$secs" "$note"
		[ -n "${KEEP:-}" ] || rm -rf "$dir"
	else
		fail=$((fail + 1)); failed+=("$name")
		printf 'FAIL %-42s%s %s\n' "$name" "$why" "$note"
		local f
		for f in uas_errors.log uac_errors.log; do
			[ -s "$dir/$f" ] && { echo "  --- $f"; grep -v '^The following events occurred' "$dir/$f" | tail -n 4 | sed 's/^/  /'; }
		done
		echo "  logs: $dir"
	fi
}

# has FILE REGEX / hasnt FILE REGEX: a log contains (or lacks) an extended regexp.
has() { grep -Eq -- "$2" "$1" || { echo "no /$2/ in $1"; return 1; }; }
hasnt() { ! grep -Eq -- "$2" "$1" || { echo "unexpected /$2/ in $1"; return 1; }; }
# calls FILE SUCCESSFUL FAILED: SIPp's final statistics screen shows these totals.
calls() {
	local s f
	s=$(grep -E '^ *Successful call' "$1" | tail -n 1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
	f=$(grep -E '^ *Failed call' "$1" | tail -n 1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
	[ "$s" = "$2" ] && [ "$f" = "$3" ] || { echo "$1: $s successful, $f failed (want $2, $3)"; return 1; }
	echo "$1: $s successful, $f failed"
}

# digest USER PASS URI: the RFC 2617 (no qop) response to uas_401/uas_407's
# challenge for an INVITE.
digest() {
	python3 -c 'import hashlib, sys
h = lambda s: hashlib.md5(s.encode()).hexdigest()
user, password, uri = sys.argv[1:]
print(h(h(user + ":redial.test:" + password) + ":4a7f2c9e1b3d5f60718293a4b5c6d7e8:" + h("INVITE:" + uri)))' "$@"
}

echo "$(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*'), uid $(id -u), logs in $work"

# --- answer, far end hangs up -----------------------------------------------------
alloc; run answer_bye/bye_after_-d 0 0 uas_answer_bye.xml -d 500 -- selftest/uac_wait_bye.xml \
	-- has uas_messages.log '^BYE sip:sipp@127\.0\.0\.1:'
alloc; run answer_bye/no_-d_bye_right_after_ack 0 0 uas_answer_bye.xml -- selftest/uac_wait_bye.xml
alloc; run answer_bye/caller_hangs_up_first_fails 1 0 uas_answer_bye.xml -d 3000 -- uac_bench.xml -d 100 \
	-- has uas_errors.log 'unexpected BYE'

# --- answer, caller hangs up ------------------------------------------------------
alloc; run answer_wait_bye/caller_hangs_up 0 0 uas_answer_wait_bye.xml -- uac_bench.xml -d 200 \
	-- has uas_messages.log '^m=audio [0-9]+ RTP/AVP 0 101'
alloc; run answer_wait_bye/requests_sent_twice 0 0 uas_answer_wait_bye.xml -- selftest/sip_retrans.py answer
# -rtp_echo echoes whatever reaches -mp, call or not; the call checks the
# SDP and flags go together.
alloc; during=(probe echo "$rport" "$mport" 1.5 60)
run answer_wait_bye/rtp_echo 0 0 uas_answer_wait_bye.xml -rtp_echo -mp "$mport" -- selftest/uac_media.xml \
	-key rtp_port "$rport" -d 2500

# --- rejections -----------------------------------------------------------------
alloc; run reject/486 0 0 uas_486.xml -- selftest/uac_reject.xml -set code 486 \
	-- has uas_messages.log '^SIP/2.0 100 Trying'
alloc; run reject/503 0 0 uas_503.xml -- selftest/uac_reject.xml -set code 503 \
	-- has uas_messages.log '^SIP/2.0 100 Trying'
alloc; run reject/404_without_provisional 0 0 uas_404.xml -- selftest/uac_reject.xml -set code 404 \
	-- hasnt uas_messages.log '^SIP/2.0 1[0-9][0-9] '
alloc; run reject/486_requests_sent_twice 0 0 uas_486.xml -- selftest/sip_retrans.py reject
alloc; run reject/uac_check_can_fail 0 1 uas_486.xml -- selftest/uac_reject.xml -set code 503 \
	-- has uac_errors.log 'expected 503, got 486'

# --- rings until CANCEL -------------------------------------------------------------
alloc; run ring_noanswer/cancel_at_once 0 0 uas_ring_noanswer.xml -- selftest/uac_cancel.xml \
	-- has uas_messages.log '^SIP/2.0 487 Request Terminated'
alloc; run ring_noanswer/cancel_after_2s 0 0 uas_ring_noanswer.xml -- selftest/uac_cancel.xml -d 2000 \
	-- has uas_messages.log '^CSeq: 7 INVITE'
alloc; run ring_noanswer/requests_sent_twice 0 0 uas_ring_noanswer.xml -- selftest/sip_retrans.py cancel

# --- digest challenges ------------------------------------------------------------
alloc; run auth/401_good_password 0 0 uas_401.xml -- selftest/uac_auth.xml -au alice -ap secret -d 200 \
	-- has uac_messages.log '^Authorization: Digest username="alice"'
alloc; run auth/401_wrong_password_403 1 0 uas_401.xml -- selftest/uac_auth.xml -au alice -ap wrong \
	-- has uas_errors.log 'rejected the credentials: response does not match password secret'
alloc; run auth/401_wrong_user_403 1 0 uas_401.xml -- selftest/uac_auth.xml -au bob -ap secret \
	-- has uas_errors.log 'rejected the credentials: username is not alice'
alloc; run auth/407_good_password 0 0 uas_407.xml -- selftest/uac_auth.xml -au alice -ap secret -d 200 \
	-- has uac_messages.log '^Proxy-Authorization: Digest username="alice"'
alloc; run auth/407_expected_response_good 0 0 uas_407.xml -set expected_response "$(digest alice secret "sip:127.0.0.1:$uport")" \
	-- selftest/uac_auth.xml -au alice -ap secret
alloc; run auth/407_expected_response_wrong_pw_403 1 0 uas_407.xml -set expected_response "$(digest alice secret "sip:127.0.0.1:$uport")" \
	-- selftest/uac_auth.xml -au alice -ap wrong -- has uas_errors.log 'is not -set expected_response'
alloc; run auth/407_no_expected_wrong_pw_accepted 0 0 uas_407.xml -- selftest/uac_auth.xml -au alice -ap wrong
alloc; run auth/407_wrong_user_403 1 0 uas_407.xml -- selftest/uac_auth.xml -au bob -ap secret \
	-- has uas_errors.log 'rejected the credentials: username is not alice'
alloc; run auth/407_uas_hangs_up_on_recv_timeout 0 0 uas_407.xml -recv_timeout 500 \
	-- selftest/uac_auth.xml -au alice -ap secret -set wait_bye 1 -- has uas_messages.log '^BYE sip:sipp@'

# --- destination plays RTP ----------------------------------------------------------
alloc; during=(probe sink "$rport" 2.5 80 --tone pcmu_tone.ulaw)
run dest_rtp/rtp_stream 0 0 uas_dest_rtp.xml -- selftest/uac_media.xml -key rtp_port "$rport" -d 2000
if [ "$(id -u)" = 0 ]; then
	alloc; during=(probe sink "$rport" 2.5 80 --ssrc 5EDA1A00 --tone pcmu_tone.ulaw)
	run dest_rtp/play_pcap_audio_as_root 0 0 uas_dest_rtp_pcap.xml -- selftest/uac_media.xml -key rtp_port "$rport" -d 2000
else
	echo "skip dest_rtp/play_pcap_audio_as_root (needs root for SIPp's raw socket)"
fi

# --- OPTIONS ---------------------------------------------------------------------------
alloc; run options/200 0 0 selftest/uas_options_200.xml -- uac_options.xml

# The benchmark pair, briefly: 3000 calls at 1000 calls/s, all must succeed
# on both sides (SIPp's final statistics).
bench() {
	local name=bench/uac_bench_vs_uas_bench
	selected "$name" || return 0
	alloc
	local dir="$work/bench" t0=$SECONDS
	mkdir -p "$dir"
	timeout 120 sipp -sf uas_bench.xml -i 127.0.0.1 -p "$uport" -m 3000 -nostdin >"$dir/uas.out" 2>&1 &
	local upid=$!
	wait_bound "$uport"
	timeout 120 sipp -sf uac_bench.xml -i 127.0.0.1 -p "$cport" -r 1000 -m 3000 -nostdin "127.0.0.1:$uport" >"$dir/uac.out" 2>&1
	local got_uac=$?
	wait "$upid"
	local got_uas=$?
	local uac_calls uas_calls ok=1
	uac_calls=$(calls "$dir/uac.out" 3000 0) || ok=0
	uas_calls=$(calls "$dir/uas.out" 3000 0) || ok=0
	if [ "$got_uas$got_uac" = 00 ] && [ $ok = 1 ]; then
		pass=$((pass + 1))
		printf 'ok   %-42s uas=0 uac=0 %3ss %s\n' "$name" $((SECONDS - t0)) "uac ${uac_calls#*: }, uas ${uas_calls#*: }"
		[ -n "${KEEP:-}" ] || rm -rf "$dir"
	else
		fail=$((fail + 1)); failed+=("$name")
		echo "FAIL $name uas=$got_uas uac=$got_uac; $uac_calls; $uas_calls; logs: $dir"
	fi
}
bench

echo "passed $pass, failed $fail${failed[*]:+: ${failed[*]}}"
[ -n "${KEEP:-}" ] || [ "$fail" -gt 0 ] || rmdir "$work" 2>/dev/null || true
[ "$fail" = 0 ]
