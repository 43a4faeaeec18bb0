package call

import "testing"

func TestFromSIP(t *testing.T) {
	tests := []struct {
		code     int
		timedOut bool
		disp     Disposition
		name     string
		q850     int
	}{
		// RFC 3398 section 8.2.6.1, row by row.
		{400, false, Failed, "NORMAL_TEMPORARY_FAILURE", 41},
		{401, false, Failed, "CALL_REJECTED", 21},
		{402, false, Failed, "CALL_REJECTED", 21},
		{403, false, Failed, "CALL_REJECTED", 21},
		{404, false, InvalidNumber, "UNALLOCATED_NUMBER", 1},
		{405, false, Failed, "SERVICE_UNAVAILABLE", 63},
		{406, false, Failed, "SERVICE_NOT_IMPLEMENTED", 79},
		{407, false, Failed, "CALL_REJECTED", 21},
		{408, false, Failed, "RECOVERY_ON_TIMER_EXPIRE", 102},
		{410, false, InvalidNumber, "NUMBER_CHANGED", 22},
		{413, false, Failed, "INTERWORKING", 127},
		{414, false, Failed, "INTERWORKING", 127},
		{415, false, Failed, "SERVICE_NOT_IMPLEMENTED", 79},
		{416, false, Failed, "INTERWORKING", 127},
		{420, false, Failed, "INTERWORKING", 127},
		{421, false, Failed, "INTERWORKING", 127},
		{423, false, Failed, "INTERWORKING", 127},
		{480, false, NoAnswer, "NO_USER_RESPONSE", 18},
		{481, false, Failed, "NORMAL_TEMPORARY_FAILURE", 41},
		{482, false, Failed, "EXCHANGE_ROUTING_ERROR", 25},
		{483, false, Failed, "EXCHANGE_ROUTING_ERROR", 25},
		{484, false, InvalidNumber, "INVALID_NUMBER_FORMAT", 28},
		{485, false, InvalidNumber, "UNALLOCATED_NUMBER", 1},
		{486, false, Busy, "USER_BUSY", 17},
		{487, false, Cancelled, "ORIGINATOR_CANCEL", 487},
		{488, false, Failed, "INCOMPATIBLE_DESTINATION", 88},
		{500, false, Failed, "NORMAL_TEMPORARY_FAILURE", 41},
		{501, false, Failed, "SERVICE_NOT_IMPLEMENTED", 79},
		{502, false, Failed, "NETWORK_OUT_OF_ORDER", 38},
		{503, false, Congestion, "NORMAL_TEMPORARY_FAILURE", 41},
		{504, false, Failed, "RECOVERY_ON_TIMER_EXPIRE", 102},
		{505, false, Failed, "INTERWORKING", 127},
		{513, false, Failed, "INTERWORKING", 127},
		{600, false, Busy, "USER_BUSY", 17},
		{603, false, Busy, "CALL_REJECTED", 21},
		{604, false, InvalidNumber, "UNALLOCATED_NUMBER", 1},
		{606, false, Failed, "INCOMPATIBLE_DESTINATION", 88},
		// Later RFCs.
		{607, false, Busy, "CALL_REJECTED", 21},
		{608, false, Failed, "CALL_REJECTED", 21},
		// Our ring timeout cancelled the INVITE.
		{487, true, NoAnswer, "NO_ANSWER", 19},
		{0, true, NoAnswer, "NO_ANSWER", 19},
		// A real answer that crossed our CANCEL keeps its meaning.
		{486, true, Busy, "USER_BUSY", 17},
		{480, true, NoAnswer, "NO_USER_RESPONSE", 18},
		{503, true, Congestion, "NORMAL_TEMPORARY_FAILURE", 41},
		// No final response at all.
		{0, false, Failed, "RECOVERY_ON_TIMER_EXPIRE", 102},
		// Codes outside the table: RFC 3398 says 31.
		{409, false, Failed, "NORMAL_UNSPECIFIED", 31},
		{422, false, Failed, "NORMAL_UNSPECIFIED", 31},
		{491, false, Failed, "NORMAL_UNSPECIFIED", 31},
		{499, false, Failed, "NORMAL_UNSPECIFIED", 31},
		{580, false, Failed, "NORMAL_UNSPECIFIED", 31},
		{699, false, Failed, "NORMAL_UNSPECIFIED", 31},
		{302, false, Failed, "REDIRECTION_TO_NEW_DESTINATION", 23},
		{200, false, Answered, "NORMAL_CLEARING", 16},
	}
	for _, tt := range tests {
		d, c := FromSIP(tt.code, tt.timedOut)
		if d != tt.disp || c.Name != tt.name || c.Code != tt.q850 {
			t.Errorf("FromSIP(%d, %v) = %s/%s(%d), want %s/%s(%d)",
				tt.code, tt.timedOut, d, c.Name, c.Code, tt.disp, tt.name, tt.q850)
		}
	}
}

func TestCauseString(t *testing.T) {
	if got := CircuitCongestion.String(); got != "NORMAL_CIRCUIT_CONGESTION" {
		t.Fatalf("String() = %q", got)
	}
}
