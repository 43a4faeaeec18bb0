package sip

import (
	"fmt"
	"strings"

	"redial/internal/validate"
)

// reservedHeaders are the headers the SIP layer writes itself. A sip_h_
// variable may not add a second one: a forged Via, Call-ID or
// Content-Length would reroute responses, split the dialog or smuggle a
// second message into a TCP stream. Keys are lower case, compact forms
// included.
var reservedHeaders = map[string]bool{
	"via": true, "v": true, "from": true, "f": true, "to": true, "t": true,
	"call-id": true, "i": true, "cseq": true, "contact": true, "m": true,
	"content-length": true, "l": true, "content-type": true, "c": true,
	"max-forwards": true, "route": true, "record-route": true,
	"authorization": true, "proxy-authorization": true,
}

// checkDialRequest refuses a request that would write CR, LF or NUL into
// the INVITE, whatever its source: the edges validate channel variables
// too, and this is the last line of defence before the wire. Errors name
// the header and, where it comes from one, the channel variable.
func checkDialRequest(r *DialRequest) error {
	// The field names are built only for an error: quoting the target
	// cost every call an fmt.Sprintf.
	if validate.HeaderValue(r.Target) != nil {
		return validate.HeaderValueField("Request-URI "+quoteShort(r.Target), r.Target)
	}
	if err := validate.HeaderValueField("From user (origination_caller_id_number)", r.FromUser); err != nil {
		return err
	}
	if err := validate.HeaderValueField("From display name (origination_caller_id_name)", r.FromName); err != nil {
		return err
	}
	if r.FromHost != "" && !hostLike(r.FromHost) {
		return fmt.Errorf("From host (sip_from_host): %s is not a host name or address", quoteShort(r.FromHost))
	}
	if err := validate.HeaderValueField("digest username (line username)", r.Username); err != nil {
		return err
	}
	if strings.ContainsAny(r.Username, `"\`) {
		return fmt.Errorf("digest username (line username): %s holds a quote or backslash", quoteShort(r.Username))
	}
	for name, value := range r.Headers {
		if isToken(name) && !reservedHeaders[strings.ToLower(name)] && validate.HeaderValue(value) == nil {
			continue
		}
		field := "header " + quoteShort(name) + " (variable " + quoteShort("sip_h_"+name) + ")"
		if !isToken(name) {
			return fmt.Errorf("%s: not a valid header name", field)
		}
		if reservedHeaders[strings.ToLower(name)] {
			return fmt.Errorf("%s: this header is written by redial and cannot be set", field)
		}
		if err := validate.HeaderValueField(field, value); err != nil {
			return err
		}
	}
	return nil
}

// quoteShort quotes s for an error, at most 64 bytes of it.
func quoteShort(s string) string {
	if len(s) <= 64 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:64], len(s))
}

// isToken reports whether s is an RFC 3261 token (a header name, a
// parameter's name or value).
func isToken[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("-.!%*_+`'~", c) >= 0
}

// hostLike accepts what may stand after '@' in a URI: a host name, an
// IPv4 address or a bracketed IPv6 address, optionally with a port.
func hostLike(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte(".-:[]", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// quoteDisplayName escapes '"' and '\' as quoted-pairs (RFC 3261 25.1):
// sipgo writes the display name between quotes as it is, so a bare quote
// would end the quoted-string and let the rest pose as URI and parameters.
func quoteDisplayName(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return r.Replace(s)
}
