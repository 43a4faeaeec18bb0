// Package chaos is redial's fault-injection suite, run by `make chaos`
// and kept out of `make test`: its tests carry the chaos build tag
// (go test -tags chaos ./internal/chaos/...).
//
// Each scenario runs a campaign (or scheduled calls, or callbacks) of a few
// hundred numbers on real `redial serve` processes against real
// redis-server deployments (a single server with AOF, a Sentinel trio, a
// 3-master Cluster) and a SIPp carrier, injects one fault (Redis killed,
// wiped, paused or failed over; a node killed with -9), and measures what
// users rely on: numbers dialed, dialed twice, lost, CDRs duplicated,
// numbers parked in :interrupted that also have a CDR, and the time to
// resume. With CHAOS_REPORT set, the figures are written to that file
// (docs/reliability.md).
package chaos
