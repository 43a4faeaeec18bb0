package schedule

import (
	"strings"
	"testing"
)

// Fuzzing found expiries beyond int64: 1e300 or "9223372036854775808"
// became Expires -9223372036854775808, and the member was dropped as
// EXPIRED instead of dialed. An expiry is a unix time between 1970 and
// the end of year 9999, or 0 (or absent) for none.
func TestParseMemberRefusesExpiresOutOfRange(t *testing.T) {
	for _, e := range []string{`1e300`, `-1e300`, `"9223372036854775808"`, `9223372036854775808`, `"1e300"`,
		`-1`, `"-5"`, `253402300800`, `1700000000000`, `"NaN"`, `"Inf"`, `"-Inf"`} {
		raw := `{"params":{"number":"1001","config":"c","expires":` + e + `}}`
		_, err := parseMember(raw)
		if err == nil || !strings.HasPrefix(err.Error(), "params.expires: want unix seconds") {
			t.Errorf("expires %s: got %v, want params.expires: want unix seconds ...", e, err)
		}
	}
	for e, want := range map[string]int64{`0`: 0, `null`: 0, `"1700000000"`: 1700000000, `1700000000.5`: 1700000000,
		`253402300799`: 253402300799, `4102444800`: 4102444800} {
		m, err := parseMember(`{"params":{"number":"1001","config":"c","expires":` + e + `}}`)
		if err != nil || m.Expires != want {
			t.Errorf("expires %s: %d, %v; want %d", e, m.Expires, err, want)
		}
	}
}
