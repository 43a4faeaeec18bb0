package notify

import (
	"strings"
	"testing"

	"redial/internal/store"
)

// TestEncodedEnvelopeHoldsMarshalJSON checks that the envelope PublishCDR
// pushes carries exactly MarshalJSON's bytes, for a usual CDR and for one
// cut to MaxCDRBytes.
func TestEncodedEnvelopeHoldsMarshalJSON(t *testing.T) {
	big := benchCDR(1)
	big.Variables = map[string]string{"a": strings.Repeat("x", MaxCDRBytes), "b": "<&>"}
	for _, c := range []*CDR{benchCDR(0), big, {CDRID: "empty"}} {
		want, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		env, payload := c.encode(true)
		if string(payload) != string(want) {
			t.Errorf("payload %s, want %s", payload, want)
		}
		if got, ok := store.CDREnvelopePayload(env); !ok || string(got) != string(want) {
			t.Errorf("envelope %s does not hold %s", env, want)
		}
		if !strings.HasPrefix(string(env), `{"type":"cdr","payload":{`) {
			t.Errorf("envelope %s", env)
		}
	}
}
