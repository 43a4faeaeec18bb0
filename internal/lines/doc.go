// Package lines manages SIP trunks ("lines") and line groups: which line a
// new call may use, under per-line channel and calls-per-second limits that
// hold across every node sharing Redis, and the policy for failing over to
// the next line group (TrunkFailure).
//
// Lines are the fields of the cti_line@<domain> hash, each
// {"params": {...}, "variables": {...}}. Decisions where the design is
// silent:
//
//   - limit and cps absent (or null) mean unlimited (Unlimited, -1); an
//     explicit 0 makes the line unusable, which is logged at each change.
//     Both accept numbers or numeric strings ("30"); anything else rejects
//     the line.
//   - enable absent means enabled; true/false, "true"/"false" and 1/0 are
//     accepted.
//   - group and uri are required; uri must be sip:host[:port][;params].
//     transport is udp or tcp, defaulting to the URI's transport param,
//     else udp.
//   - variables accept strings, numbers (as written) and bools; null drops
//     the variable.
//   - A malformed line is skipped, logged and counted once per distinct
//     value, and shown in Statuses with its error; the others keep working.
//
// A call holds a lease on its line: a member of a Redis ZSET scored with
// its expiry, which the holding node renews every Config.RenewEvery. A node
// that dies never leaks a channel for longer than Config.LeaseTTL. The CPS
// limit is a sliding window: at most cps grants in any 1000 ms, by the
// Redis server's clock. Key names and scripts live in internal/store
// (lines.go).
package lines
