package call

import "redial/internal/notify"

// Disposition is how one call attempt ended, as reported in the CDR's
// "disposition" field. The values are part of the contract with integrators.
//
// The type is notify's (an alias) because the CDR carries it and package
// call imports notify; the values are defined here, where calls end.
type Disposition = notify.Disposition

// The dispositions a CDR can carry.
const (
	// Answered: the callee answered.
	Answered Disposition = "ANSWERED"
	// Busy: the callee was busy or declined the call.
	Busy Disposition = "BUSY"
	// NoAnswer: the callee was alerted (or unreachable) and did not answer in time.
	NoAnswer Disposition = "NO_ANSWER"
	// Cancelled: redial cancelled the attempt before it was answered, for a
	// reason other than its ring timeout (operator, task stopped, shutdown).
	Cancelled Disposition = "CANCELLED"
	// Failed: the attempt failed for a reason that is not about the callee.
	Failed Disposition = "FAILED"
	// Congestion: the carrier or the network had no capacity.
	Congestion Disposition = "CONGESTION"
	// InvalidNumber: the number does not exist, changed or is malformed.
	InvalidNumber Disposition = "INVALID_NUMBER"
	// NoLine: no line had a free channel (or CPS budget) for the attempt.
	NoLine Disposition = "NO_LINE"
	// Expired: the number's dialing window or lifetime ran out before it was dialed.
	Expired Disposition = "EXPIRED"
	// Abandoned: the caller hung up while waiting in a queue, before an agent
	// was connected (the CDR's ext is null).
	Abandoned Disposition = "ABANDONED"
)

// Cause is a hangup cause: a Q.850 cause (or one of FreeSWITCH's extensions
// above 127) with FreeSWITCH's name for it, e.g. {"USER_BUSY", 17}. The name
// goes into the CDR's hangup_cause.
type Cause struct {
	Name string
	Code int
}

// String returns the cause name.
func (c Cause) String() string { return c.Name }

// The hangup causes the call path uses. The names are FreeSWITCH's so CDRs
// read like FreeSWITCH's; codes above 127 are FreeSWITCH's own (not Q.850).
// NoAnswerFromUser is NO_ANSWER (19); the shorter name is the disposition.
var (
	UnallocatedNumber           = Cause{"UNALLOCATED_NUMBER", 1}
	NoRouteDestination          = Cause{"NO_ROUTE_DESTINATION", 3}
	NormalClearing              = Cause{"NORMAL_CLEARING", 16}
	UserBusy                    = Cause{"USER_BUSY", 17}
	NoUserResponse              = Cause{"NO_USER_RESPONSE", 18}
	NoAnswerFromUser            = Cause{"NO_ANSWER", 19}
	SubscriberAbsent            = Cause{"SUBSCRIBER_ABSENT", 20}
	CallRejected                = Cause{"CALL_REJECTED", 21}
	NumberChanged               = Cause{"NUMBER_CHANGED", 22}
	RedirectionToNewDestination = Cause{"REDIRECTION_TO_NEW_DESTINATION", 23}
	ExchangeRoutingError        = Cause{"EXCHANGE_ROUTING_ERROR", 25}
	DestinationOutOfOrder       = Cause{"DESTINATION_OUT_OF_ORDER", 27}
	InvalidNumberFormat         = Cause{"INVALID_NUMBER_FORMAT", 28}
	NormalUnspecified           = Cause{"NORMAL_UNSPECIFIED", 31}
	CircuitCongestion           = Cause{"NORMAL_CIRCUIT_CONGESTION", 34}
	NetworkOutOfOrder           = Cause{"NETWORK_OUT_OF_ORDER", 38}
	NormalTemporaryFailure      = Cause{"NORMAL_TEMPORARY_FAILURE", 41}
	SwitchCongestion            = Cause{"SWITCH_CONGESTION", 42}
	ServiceUnavailable          = Cause{"SERVICE_UNAVAILABLE", 63}
	ServiceNotImplemented       = Cause{"SERVICE_NOT_IMPLEMENTED", 79}
	IncompatibleDestination     = Cause{"INCOMPATIBLE_DESTINATION", 88}
	RecoveryOnTimerExpire       = Cause{"RECOVERY_ON_TIMER_EXPIRE", 102}
	Interworking                = Cause{"INTERWORKING", 127}
	OriginatorCancel            = Cause{"ORIGINATOR_CANCEL", 487}
	SystemShutdown              = Cause{"SYSTEM_SHUTDOWN", 501}
	ManagerRequest              = Cause{"MANAGER_REQUEST", 503}
	AllottedTimeout             = Cause{"ALLOTTED_TIMEOUT", 602}
	MediaTimeout                = Cause{"MEDIA_TIMEOUT", 604}
	GatewayDown                 = Cause{"GATEWAY_DOWN", 609}
)

type sipCauseRow struct {
	disp  Disposition
	cause Cause
}

// sipCauseTable is RFC 3398 section 8.2.6.1 (SIP status -> ISUP cause), with a
// disposition added for each row. Rows the RFC does not list are marked.
var sipCauseTable = map[int]sipCauseRow{
	400: {Failed, NormalTemporaryFailure},
	401: {Failed, CallRejected}, // our credentials were refused: a line problem, not the callee
	402: {Failed, CallRejected},
	403: {Failed, CallRejected}, // usually the carrier barring the route or the caller ID
	404: {InvalidNumber, UnallocatedNumber},
	405: {Failed, ServiceUnavailable},
	406: {Failed, ServiceNotImplemented},
	407: {Failed, CallRejected},
	408: {Failed, RecoveryOnTimerExpire},
	410: {InvalidNumber, NumberChanged},
	413: {Failed, Interworking},
	414: {Failed, Interworking},
	415: {Failed, ServiceNotImplemented},
	416: {Failed, Interworking},
	420: {Failed, Interworking},
	421: {Failed, Interworking},
	423: {Failed, Interworking},
	480: {NoAnswer, NoUserResponse},
	481: {Failed, NormalTemporaryFailure},
	482: {Failed, ExchangeRoutingError},
	483: {Failed, ExchangeRoutingError},
	484: {InvalidNumber, InvalidNumberFormat},
	485: {InvalidNumber, UnallocatedNumber},
	486: {Busy, UserBusy},
	487: {Cancelled, OriginatorCancel}, // RFC: no mapping; see FromSIP
	488: {Failed, IncompatibleDestination},
	500: {Failed, NormalTemporaryFailure},
	501: {Failed, ServiceNotImplemented},
	502: {Failed, NetworkOutOfOrder},
	503: {Congestion, NormalTemporaryFailure},
	504: {Failed, RecoveryOnTimerExpire},
	505: {Failed, Interworking},
	513: {Failed, Interworking},
	600: {Busy, UserBusy},
	603: {Busy, CallRejected},
	604: {InvalidNumber, UnallocatedNumber},
	606: {Failed, IncompatibleDestination},
	// Not in RFC 3398 (later RFCs): 607 Unwanted (RFC 8197) is the callee
	// declining, 608 Rejected (RFC 8688) is an intermediary's call analytics.
	607: {Busy, CallRejected},
	608: {Failed, CallRejected},
}

// FromSIP maps the final SIP response code of a failed INVITE to a
// disposition and hangup cause, following RFC 3398 section 8.2.6.1 for the
// cause. timedOut says that redial's own ring timeout cancelled the INVITE.
//
// Judgement calls beyond the RFC's table:
//   - 487 has no RFC mapping because it only means "your CANCEL worked": it
//     is CANCELLED/ORIGINATOR_CANCEL, or NO_ANSWER/NO_ANSWER (19) when the
//     CANCEL came from the ring timeout. code 0 (no final response at all,
//     e.g. the CANCEL's 487 never arrived) with timedOut is NO_ANSWER too;
//     without timedOut it is FAILED/RECOVERY_ON_TIMER_EXPIRE, as for 408.
//   - 488 and 606 map "by Warning header" in the RFC; without one they are
//     a codec/SDP mismatch, INCOMPATIBLE_DESTINATION (88), as in FreeSWITCH.
//   - 480 (the callee is unreachable or did not answer) is NO_ANSWER; 408
//     (a SIP timer, not a person) is FAILED.
//   - 503 is CONGESTION: the carrier is refusing load; retry later.
//   - 603/607 (the callee declined) are BUSY so campaigns retry them like a
//     busy callee; 403/608 come from the network and are FAILED.
//   - Any code the table does not list maps to NORMAL_UNSPECIFIED (31), as
//     the RFC says, with disposition FAILED; 3xx (a redirect that was not
//     followed) maps to REDIRECTION_TO_NEW_DESTINATION (23), FAILED.
//   - A 2xx is not a failure; it maps to ANSWERED/NORMAL_CLEARING.
//
// A final response that arrives after the ring timeout fired but is not the
// CANCEL's 487 (a 486 that crossed the CANCEL) keeps its own meaning.
func FromSIP(code int, timedOut bool) (Disposition, Cause) {
	if timedOut && (code == 487 || code == 0) {
		return NoAnswer, NoAnswerFromUser
	}
	if m, ok := sipCauseTable[code]; ok {
		return m.disp, m.cause
	}
	switch {
	case code == 0:
		return Failed, RecoveryOnTimerExpire
	case code >= 200 && code < 300:
		return Answered, NormalClearing
	case code >= 300 && code < 400:
		return Failed, RedirectionToNewDestination
	default:
		return Failed, NormalUnspecified
	}
}
