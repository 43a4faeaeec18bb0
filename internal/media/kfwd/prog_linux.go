//go:build linux

package kfwd

import (
	"encoding/binary"

	"github.com/cilium/ebpf/asm"
)

// tcx verdicts.
const (
	tcxNext = -1 // let the next program on the interface decide
	tcxPass = 0  // end the chain, hand the packet to the stack
	tcxDrop = 2
)

// Offsets in struct __sk_buff (include/uapi/linux/bpf.h).
const (
	skbIngressIfindex = 36
	skbData           = 76
	skbDataEnd        = 80
)

// Offsets in the packet as tc ingress sees it: an ethernet header (all-zero
// MACs on lo), an IPv4 header without options, the UDP header.
const (
	offEthType  = 12
	offIPVerIHL = 14
	offIPFrag   = 20
	offIPProto  = 23
	offIPCsum   = 24
	offIPSaddr  = 26
	offIPDaddr  = 30
	offUDPSport = 34
	offUDPDport = 36
	offUDPLen   = 38
	offUDPCsum  = 40
	hdrLen      = 42
)

// Stack layout, relative to the frame pointer R10.
const (
	stKey      = -8  // ruleKey: old dport -8, old sport -6, old saddr -4
	stOldDport = -8  //
	stOldSport = -6  //
	stOldSaddr = -4  //
	stRule     = -16 // first 8 bytes of ruleValue: new sport -16, new dport -14, new daddr -12
	stNewSport = -16 //
	stNewDport = -14 //
	stNewDaddr = -12 //
	stOldDaddr = -20 // u32, network order
	stNewSaddr = -24 // u32, network order
	stRoute    = -32 // route part of ruleValue: ifindex -32, source -28
	stIfindex  = -32 //
	stSrc      = -28 //
)

// Offsets in ruleValue (layout in kfwd_linux.go).
const (
	valRoute   = 8 // ifindex u32 (host order) and source u32 (network order)
	valIfindex = 8
	valSrc     = 12
	valPackets = 16
	valBytes   = 24
)

// Helper flags and constants from include/uapi/linux/bpf.h.
const (
	ipprotoUDP         = 17
	fPseudoHdr         = 1 << 4
	fMarkMangled0      = 1 << 5
	loopbackIfindex    = 1 // LOOPBACK_IFINDEX: lo is ifindex 1 in every netns
	loopbackFirstOctet = 127
)

// be16 returns the value a 16-bit load from the packet yields on this host
// for the network-order number n, so the program compares without swapping.
func be16(n uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], n)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// program builds the tcx ingress program around the rule map mapFD.
//
// Registers: R6 = skb (survives helper calls), R7 = rule value in the map,
// R8 = egress ifindex for bpf_redirect_neigh (0 in local mode), R9 = UDP
// payload length; R1-R5 are helper arguments and scratch, R0 the helper
// result.
func program(mapFD int) asm.Instructions {
	// csumAndStore emits the rewrite of one header field: checksum fix-ups
	// first (they read the old and new value from the stack), then the new
	// bytes. Any failure drops the packet: by then it may be half rewritten
	// and must not go anywhere.
	csumAndStore := func(off, size int32, oldSt, newSt int16, l3 bool) asm.Instructions {
		var memSize asm.Size = asm.Word
		if size == 2 {
			memSize = asm.Half
		}
		// csumReplace calls fn(skb, field, old, new, flags): the l3 or l4
		// checksum helper.
		csumReplace := func(fn asm.BuiltinFunc, field, flags int32) asm.Instructions {
			return asm.Instructions{
				asm.Mov.Reg(asm.R1, asm.R6),
				asm.Mov.Imm(asm.R2, field),
				asm.LoadMem(asm.R3, asm.RFP, oldSt, memSize),
				asm.LoadMem(asm.R4, asm.RFP, newSt, memSize),
				asm.Mov.Imm(asm.R5, flags),
				fn.Call(),
				asm.JNE.Imm(asm.R0, 0, "drop"),
			}
		}
		var insns asm.Instructions
		if l3 {
			// IPv4 header checksum: bpf_l3_csum_replace(skb, 24, old, new, 4)
			insns = append(insns, csumReplace(asm.FnL3CsumReplace, offIPCsum, size)...)
		}
		// UDP checksum: addresses are in the pseudo header; MARK_MANGLED_0
		// leaves an absent (zero) checksum zero and writes a computed zero
		// as 0xffff. bpf_l4_csum_replace(skb, 40, old, new, flags|size)
		l4Flags := int32(fMarkMangled0) | size
		if l3 {
			l4Flags |= fPseudoHdr
		}
		insns = append(insns, csumReplace(asm.FnL4CsumReplace, offUDPCsum, l4Flags)...)
		insns = append(insns,
			// The field itself: bpf_skb_store_bytes(skb, off, fp+newSt, size, 0)
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, off),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, int32(newSt)),
			asm.Mov.Imm(asm.R4, size),
			asm.Mov.Imm(asm.R5, 0),
			asm.FnSkbStoreBytes.Call(),
			asm.JNE.Imm(asm.R0, 0, "drop"),
		)
		return insns
	}

	insns := asm.Instructions{
		// Keep skb in R6; R2 = skb->data, R3 = skb->data_end.
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, skbData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, skbDataEnd, asm.Word),

		// Step 1, parse. Ethernet + IPv4 without options + UDP must be in
		// the linear data, else leave the packet alone.
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, hdrLen),
		asm.JGT.Reg(asm.R4, asm.R3, "next"),
		// Ethertype IPv4.
		asm.LoadMem(asm.R4, asm.R2, offEthType, asm.Half),
		asm.JNE.Imm(asm.R4, be16(0x0800), "next"),
		// Version 4 with a 20-byte header: options would move the UDP header.
		asm.LoadMem(asm.R4, asm.R2, offIPVerIHL, asm.Byte),
		asm.JNE.Imm(asm.R4, 0x45, "next"),
		// No fragment: MF clear and fragment offset 0 (the DF bit may be set).
		asm.LoadMem(asm.R4, asm.R2, offIPFrag, asm.Half),
		asm.And.Imm(asm.R4, be16(0x3fff)),
		asm.JNE.Imm(asm.R4, 0, "next"),
		// UDP.
		asm.LoadMem(asm.R4, asm.R2, offIPProto, asm.Byte),
		asm.JNE.Imm(asm.R4, ipprotoUDP, "next"),
		// R9 = UDP length - 8 (payload bytes, host order); a length below
		// 8 is malformed.
		asm.LoadMem(asm.R9, asm.R2, offUDPLen, asm.Half),
		asm.HostTo(asm.BE, asm.R9, asm.Half),
		asm.JLT.Imm(asm.R9, 8, "next"),
		asm.Add.Imm(asm.R9, -8),

		// Step 2, the rule. Key on the stack {dport, sport, saddr}, copied
		// raw so it stays in network order; keep the old daddr too.
		asm.LoadMem(asm.R4, asm.R2, offUDPDport, asm.Half),
		asm.StoreMem(asm.RFP, stOldDport, asm.R4, asm.Half),
		asm.LoadMem(asm.R4, asm.R2, offUDPSport, asm.Half),
		asm.StoreMem(asm.RFP, stOldSport, asm.R4, asm.Half),
		asm.LoadMem(asm.R4, asm.R2, offIPSaddr, asm.Word),
		asm.StoreMem(asm.RFP, stOldSaddr, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, asm.R2, offIPDaddr, asm.Word),
		asm.StoreMem(asm.RFP, stOldDaddr, asm.R4, asm.Word),
		// R0 = bpf_map_lookup_elem(rules, fp-8); no rule, no business.
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "next"),
		// R7 = rule; snapshot its address part (8 bytes in one load) so a
		// concurrent replace cannot mix two rules in one packet.
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadMem(asm.R4, asm.R7, 0, asm.DWord),
		asm.StoreMem(asm.RFP, stRule, asm.R4, asm.DWord),

		// Step 3, the mode: a new destination in 127/8 for a packet that
		// came in on lo is local; everything else is routed.
		asm.LoadMem(asm.R4, asm.RFP, stNewDaddr, asm.Byte),
		asm.JNE.Imm(asm.R4, loopbackFirstOctet, "routed"),
		asm.LoadMem(asm.R4, asm.R6, skbIngressIfindex, asm.Word),
		asm.JNE.Imm(asm.R4, loopbackIfindex, "routed"),

		// Local mode. Only for packets sent to a 127/8 address: then the
		// skb still carries the sender's output route, which is a local
		// one, so after the rewrite ip_rcv delivers it locally and UDP
		// finds the socket by the new header. (A packet sent on this host
		// to a non-127 local address also arrives on lo; that case is left
		// to userspace.)
		asm.LoadMem(asm.R4, asm.RFP, stOldDaddr, asm.Byte),
		asm.JNE.Imm(asm.R4, loopbackFirstOctet, "next"),
		// New saddr = the address the packet was sent to; R8 = 0: pass.
		asm.LoadMem(asm.R4, asm.RFP, stOldDaddr, asm.Word),
		asm.StoreMem(asm.RFP, stNewSaddr, asm.R4, asm.Word),
		asm.Mov.Imm(asm.R8, 0),
		asm.Ja.Label("rewrite"),

		// Routed mode, with the route Add resolved: snapshot it (8 bytes
		// in one load, like the address part).
		asm.LoadMem(asm.R4, asm.R7, valRoute, asm.DWord).WithSymbol("routed"),
		asm.StoreMem(asm.RFP, stRoute, asm.R4, asm.DWord),
		// Packets that came in on lo were sent by this host and still
		// carry its routing decision; they stay with userspace, as do
		// rules whose destination had no usable route (ifindex 0).
		asm.LoadMem(asm.R4, asm.R6, skbIngressIfindex, asm.Word),
		asm.JEq.Imm(asm.R4, loopbackIfindex, "next"),
		asm.LoadMem(asm.R8, asm.RFP, stIfindex, asm.Word),
		asm.JEq.Imm(asm.R8, 0, "next"),
		// New saddr = the route's preferred source; R8 = egress.
		asm.LoadMem(asm.R4, asm.RFP, stSrc, asm.Word),
		asm.StoreMem(asm.RFP, stNewSaddr, asm.R4, asm.Word),
	}

	// Step 4, both modes: rewrite saddr, daddr, sport, dport through the
	// helpers (direct packet pointers are stale after them).
	rewrite := csumAndStore(offIPSaddr, 4, stOldSaddr, stNewSaddr, true)
	rewrite[0] = rewrite[0].WithSymbol("rewrite")
	insns = append(insns, rewrite...)
	insns = append(insns, csumAndStore(offIPDaddr, 4, stOldDaddr, stNewDaddr, true)...)
	insns = append(insns, csumAndStore(offUDPSport, 2, stOldSport, stNewSport, false)...)
	insns = append(insns, csumAndStore(offUDPDport, 2, stOldDport, stNewDport, false)...)

	insns = append(insns,
		// Step 5, count the forwarded packet with atomic adds on the rule.
		asm.Mov.Imm(asm.R1, 1),
		asm.AddAtomic.Mem(asm.R7, asm.R1, asm.DWord, valPackets),
		asm.AddAtomic.Mem(asm.R7, asm.R9, asm.DWord, valBytes),
		// Local mode ends here: the stack delivers it.
		asm.JNE.Imm(asm.R8, 0, "redirect"),
		asm.Mov.Imm(asm.R0, tcxPass),
		asm.Return(),
		// Routed mode: bpf_redirect_neigh(ifindex, NULL, 0, 0) returns
		// TCX_REDIRECT; the kernel then does an output route lookup bound to
		// that interface and resolves the next hop's MAC through the
		// neighbour table (ARP included), as for a locally sent packet, so
		// no forwarding sysctl is involved. If that lookup fails the packet
		// is dropped: it is rewritten by then.
		asm.Mov.Reg(asm.R1, asm.R8).WithSymbol("redirect"),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRedirectNeigh.Call(),
		asm.Return(),

		// Not ours: the next tcx program (another Forwarder) or the stack.
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("next"),
		asm.Return(),
		// A failed rewrite left a broken packet.
		asm.Mov.Imm(asm.R0, tcxDrop).WithSymbol("drop"),
		asm.Return(),
	)
	return insns
}
