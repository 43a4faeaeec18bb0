package sip

import (
	gosip "github.com/emiago/sipgo/sip"
)

// acceptedHold is how long an answered INVITE client transaction of
// sipgo's stays in RFC 6026's Accepted state (sipgo's Timer M): T1/2
// instead of 64×T1 = 32 s. It concerns INVITEs over TCP, TLS and
// WebSocket and to host names; over UDP to an IP address the engine runs
// its own transaction (inviteUDP), which ends at the 2xx.
//
// In Accepted, sipgo keeps the whole transaction — the INVITE and its 2xx —
// only to pass retransmitted 2xx to a hook that replays the ACK, and at
// thousands of calls a second the 32 s of that are most of a node's heap
// (6.5 KiB per call, issue 14). The engine sends its ACK without that hook
// (uacDialog.ack): a 2xx retransmission matches no transaction, reaches
// the unhandled-response handler and is ACKed there (ackStray2xx) as long
// as its dialog is one of our established legs. The first retransmission
// comes T1 after the 2xx, so a hold shorter than T1 leaves every one of
// them to ackStray2xx (while in Accepted they would be absorbed unACKed);
// T1/2 still lets the transaction absorb a 1xx that the transport layer
// handles after the 2xx (each response is handled on a goroutine of its
// own), which would otherwise be logged as stray.
func acceptedHold() {
	gosip.Timer_M = gosip.T1 / 2
}

func init() {
	// sipgo reads Timer_M without synchronisation whenever a transaction
	// is accepted: set it once, before any goroutine of this process can
	// use sipgo.
	acceptedHold()
}

// ackStray2xx ACKs a 2xx to an INVITE that matched no client transaction
// because the transaction has ended (the engine's own at the first 2xx,
// sipgo's after acceptedHold): the callee did
// not get our ACK and retransmits its 2xx, and without a new ACK it would
// end the call after 64×T1 (RFC 3261 13.3.1.4). Only 2xx of our
// established outbound legs are ACKed, so an outsider cannot make the node
// send ACKs to addresses of its choosing. It reports whether it did.
func (e *Engine) ackStray2xx(r *gosip.Response) bool {
	cseq := r.CSeq()
	if !r.IsSuccess() || cseq == nil || cseq.MethodName != gosip.INVITE {
		return false
	}
	id, err := gosip.DialogIDFromResponse(r)
	if err != nil {
		return false
	}
	e.legsMu.RLock()
	leg := e.legs[legKey(true, id)]
	e.legsMu.RUnlock()
	if leg == nil || leg.uac == nil {
		return false
	}
	// The same ACK as the first (uacDialog.ack), with a Via branch of its
	// own.
	if err := leg.uac.ack(); err != nil {
		e.log.Debug("sip: ACK of a retransmitted 2xx failed", "call_ref", leg.CallRef, "error", err)
		return true
	}
	e.log.Debug("sip: retransmitted 2xx ACKed", "call_ref", leg.CallRef, "call_id", leg.CallID)
	return true
}
