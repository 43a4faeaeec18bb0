package lines

// TrunkFailure reports whether a failed INVITE should fail over to the next
// line group: the trunk, not the callee, failed. That is 500, 502, 503 or
// 504; 408 or a transport error before any provisional response (a timeout
// with no 1xx at all is passed as 408); or no free line. Never 404, 480,
// 486, 487, 600, 603 or any 2xx, whose answer would be the same on any
// trunk or would ring the callee a second time.
//
// gotProvisional is true when any 1xx, 100 Trying included, arrived: the
// trunk was alive, so a later 408 or transport error is the callee's
// side (or a ring timeout), as in Kamailio's usual failure_route.
func TrunkFailure(sipCode int, gotProvisional bool, transportErr bool, noLine bool) bool {
	if noLine {
		return true
	}
	switch sipCode {
	case 500, 502, 503, 504:
		return true
	case 408:
		return !gotProvisional
	case 0:
		// No final response: only the transport error tells.
		return transportErr && !gotProvisional
	}
	// Any other final response (2xx, 404, 480, 486, 487, 6xx, ...) is the
	// callee's answer and would be the same on another trunk.
	return false
}

// MergeVariables merges channel variable layers, later layers overriding
// earlier ones (number < @host task < @template task < line). Nil layers
// are skipped; the result is a new map, never nil.
func MergeVariables(layers ...map[string]string) map[string]string {
	n := 0
	for _, l := range layers {
		n += len(l)
	}
	out := make(map[string]string, n)
	for _, l := range layers {
		for k, v := range l {
			out[k] = v
		}
	}
	return out
}
