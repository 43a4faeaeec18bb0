// Package media is redial's RTP layer: G.711 codecs, RTP port allocation,
// RTP sessions (plain and WebRTC), the B2BUA media relay, SDP offer/answer
// helpers and paced playback of audio sources.
//
// Decisions worth knowing when using it:
//
//   - Symmetric RTP latches once per SetRemote: the first RTP packet received
//     after the SDP address is set decides where the peer is (NAT rewrites
//     source ports). Afterwards packets from other sources are dropped and
//     counted in SessionStats.Dropped, so a stray sender cannot hijack or
//     inject into a call (the "RTP bleed" class of bugs). A re-INVITE calls
//     SetRemote again, which opens a new latching window.
//   - A Session starts with codec PCMU and no telephone-event type; set both
//     from Negotiate (SetCodec, SetDTMF) before relaying or playing.
//   - Relay wakes its readers with an expired read deadline rather than by
//     closing, so both sessions stay usable after it returns (IVR after a
//     bridge, for instance). While Relay runs it is the only reader.
//   - ParseSDP reports all audio codecs of the offer (including ones redial
//     cannot decode, so errors can name them) except telephone-event, which
//     goes to DTMF, and comfort noise. RTP/SAVP (SRTP) offers are errors.
//   - Only G.711 at 8 kHz with 20 ms frames is produced; Play rejects other
//     codecs.
//   - A WebRTC leg (NewWebRTCOffer, NewWebRTCAnswer) is a Session whose
//     transport is a pion peer connection instead of a UDP socket: ICE-lite
//     on one socket from the PortPool, DTLS-SRTP, rtcp-mux, BUNDLE, PCMU/PCMA
//     and telephone-event. Everything that works on a Session works on it,
//     and a relay to an RTP leg of the same G.711 law passes payloads
//     untouched. What it sends is renumbered into the one SSRC its SDP
//     announces (see WebRTCLeg).
package media
