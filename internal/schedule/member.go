package schedule

import "redial/internal/validate"

// maxExpires is the last second of year 9999 in unix seconds: the
// latest params.expires a member may carry.
const maxExpires = 253402300799

// CheckMember reports whether raw is a member of
// cti_schedule_dialer_number@<domain> the scheduled dialer would dial: the
// same parse and checks (package validate) the dialer applies when it is
// due, so POST /api/v1/schedules and `redial schedule add` refuse at once
// what would otherwise be moved to :invalid later. Whether its config
// exists is not checked: it may be written after the member.
func CheckMember(raw string) error {
	_, err := parseMember(raw)
	return err
}

// parseMember decodes a member; its error, quoted in logs and stored as
// the reason in :invalid, stays short whatever the member holds.
func parseMember(raw string) (member, error) {
	m, err := decodeMember(raw)
	return m, validate.Short(err)
}

// parseConfig decodes a schedule config; its error stays short.
func parseConfig(key, name, raw string) scheduleConfig {
	c := decodeConfig(key, name, raw)
	c.Err = validate.Short(c.Err)
	return c
}
