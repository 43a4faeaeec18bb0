package lines

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"redial/internal/jsonfield"
	"redial/internal/validate"
)

// Unlimited is the Limit or CPS of a line whose definition leaves the field
// out.
const Unlimited = -1

// Line is one parsed entry of cti_line@<domain>.
type Line struct {
	Name      string
	Group     string
	URI       string // sip:host[:port][;params] of the carrier
	Transport string // "udp" or "tcp"
	Username  string // digest credentials, empty when the trunk is IP-authenticated
	Password  string
	Prefix    string // prepended to every dialed number
	// Limit is the most concurrent channels across all nodes and CPS the
	// most new calls per second across all nodes; Unlimited when the field
	// is absent. An explicit 0 makes the line unusable.
	Limit, CPS int
	Enable     bool
	// Variables are channel variables the line adds to every call; they
	// override the task's and the number's (MergeVariables).
	Variables map[string]string
	// Extra holds the params fields redial does not interpret, as written.
	Extra map[string]json.RawMessage
}

// Usable reports whether Acquire may pick the line.
func (l Line) Usable() bool { return l.Enable && l.Limit != 0 && l.CPS != 0 }

// DialNumber is the number sent to the carrier: Prefix + number.
func (l Line) DialNumber(number string) string { return l.Prefix + number }

// DialURI is the Request-URI for number on this line: the line's URI with
// its user part replaced by DialNumber(number), and ;transport=tcp added
// for TCP lines whose URI does not name a transport.
func (l Line) DialURI(number string) string {
	u, err := parseSIPURI(l.URI)
	if err != nil {
		// Lines are validated when loaded; keep the call path total anyway.
		return "sip:" + validate.EscapeURIUser(l.DialNumber(number), false) + "@" + strings.TrimPrefix(l.URI, "sip:")
	}
	s := "sip:" + validate.EscapeURIUser(l.DialNumber(number), false) + "@" + u.hostport + u.params
	if l.Transport == "tcp" && u.transport == "" {
		s += ";transport=tcp"
	}
	return s
}

// sipURI is the part of a line URI redial needs.
type sipURI struct {
	hostport  string
	params    string // ";a=b;c" as written, without headers
	transport string // lower-case transport param, "" when absent
}

// parseSIPURI accepts sip:[user@]host[:port][;params][?headers].
func parseSIPURI(raw string) (sipURI, error) {
	var u sipURI
	if len(raw) < 4 || !strings.EqualFold(raw[:4], "sip:") {
		if i := strings.Index(raw, ":"); i > 0 {
			return u, fmt.Errorf("want a sip: URI, got scheme %q", raw[:i])
		}
		return u, fmt.Errorf("want a sip: URI, got %q", raw)
	}
	rest := raw[4:]
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	hostport := rest
	if i := strings.IndexByte(rest, ';'); i >= 0 {
		hostport, u.params = rest[:i], rest[i:]
	}
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return u, fmt.Errorf("unterminated IPv6 host in %q", raw)
		}
		host = hostport[:end+1]
		if r := hostport[end+1:]; r != "" {
			if r[0] != ':' {
				return u, fmt.Errorf("bad host:port %q", hostport)
			}
			port = r[1:]
		}
	} else if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		host, port = hostport[:i], hostport[i+1:]
	}
	if host == "" || host == "[]" || strings.ContainsAny(host, " \t/") {
		return u, fmt.Errorf("no host in %q", raw)
	}
	if port != "" || strings.HasSuffix(hostport, ":") {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return u, fmt.Errorf("bad port %q in %q", port, raw)
		}
	}
	u.hostport = hostport
	for _, p := range strings.Split(u.params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "transport") {
			u.transport = strings.ToLower(strings.TrimSpace(v))
		}
	}
	return u, nil
}

// known params fields; everything else goes to Line.Extra.
var knownParams = map[string]bool{
	"group": true, "uri": true, "transport": true, "username": true, "password": true,
	"limit": true, "cps": true, "prefix": true, "enable": true,
}

// parseLine decodes one hash value. The error names the JSON field at
// fault, and stays short whatever the value holds; the caller adds the
// line and key.
func parseLine(name, raw string) (Line, error) {
	l, err := decodeLine(name, raw)
	return l, validate.Short(err)
}

func decodeLine(name, raw string) (Line, error) {
	l := Line{Name: name, Limit: Unlimited, CPS: Unlimited, Enable: true, Transport: "udp"}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &top); err != nil {
		return l, &jsonfield.Error{Msg: "invalid JSON: " + err.Error()}
	}
	if top == nil {
		return l, &jsonfield.Error{Msg: "want a JSON object, got null"}
	}
	params, err := jsonfield.Object("params", top["params"])
	if err != nil {
		return l, err
	}
	if params == nil {
		return l, &jsonfield.Error{Field: "params", Msg: "missing"}
	}
	for k, v := range params {
		if !knownParams[k] {
			if l.Extra == nil {
				l.Extra = map[string]json.RawMessage{}
			}
			l.Extra[k] = v
		}
	}
	if l.Group, err = jsonfield.String("params.group", params["group"], false); err != nil {
		return l, err
	}
	if l.Group == "" {
		return l, &jsonfield.Error{Field: "params.group", Msg: "missing"}
	}
	if err := validate.Text("params.group", l.Group, validate.MaxNameLen); err != nil {
		return l, err
	}
	if l.URI, err = jsonfield.String("params.uri", params["uri"], false); err != nil {
		return l, err
	}
	l.URI = strings.TrimSpace(l.URI)
	if l.URI == "" {
		return l, &jsonfield.Error{Field: "params.uri", Msg: "missing"}
	}
	// DialURI keeps everything after the host: a space or control
	// character there would break the request line sipgo writes.
	if err := validate.SIPURI("params.uri", l.URI); err != nil {
		return l, err
	}
	u, perr := parseSIPURI(l.URI)
	if perr != nil {
		return l, &jsonfield.Error{Field: "params.uri", Msg: perr.Error()}
	}
	tr, err := jsonfield.String("params.transport", params["transport"], false)
	if err != nil {
		return l, err
	}
	switch tr = strings.ToLower(strings.TrimSpace(tr)); tr {
	case "":
		if u.transport == "tcp" {
			l.Transport = "tcp"
		}
	case "udp", "tcp":
		l.Transport = tr
	default:
		return l, jsonfield.WantGot("params.transport", `"udp" or "tcp"`, params["transport"])
	}
	if l.Username, err = jsonfield.String("params.username", params["username"], true); err != nil {
		return l, err
	}
	if err := validate.Ref("params.username", l.Username); err != nil {
		return l, err
	}
	if l.Password, err = jsonfield.String("params.password", params["password"], true); err != nil {
		return l, err
	}
	if l.Prefix, err = jsonfield.String("params.prefix", params["prefix"], true); err != nil {
		return l, err
	}
	// The prefix joins the number in the Request-URI user part.
	if err := validate.Text("params.prefix", l.Prefix, validate.MaxNumberLen); err != nil {
		return l, err
	}
	if l.Limit, err = count("params.limit", params["limit"]); err != nil {
		return l, err
	}
	if l.CPS, err = count("params.cps", params["cps"]); err != nil {
		return l, err
	}
	if l.Enable, err = jsonfield.Bool("params.enable", params["enable"], true); err != nil {
		return l, err
	}
	if l.Variables, err = jsonfield.Variables("variables", top["variables"]); err != nil {
		return l, err
	}
	if err := validate.Variables(l.Variables); err != nil {
		return l, err
	}
	return l, nil
}

// count decodes limit/cps: absent or null is Unlimited; a non-negative
// integer, also written as a string ("30"), is taken as is.
func count(field string, raw json.RawMessage) (int, error) {
	if jsonfield.IsNull(raw) {
		return Unlimited, nil
	}
	text := ""
	if n, ok := jsonfield.Number(raw); ok {
		text = n.String()
	} else {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, jsonfield.WantGot(field, "number", raw)
		}
		text = strings.TrimSpace(s)
	}
	if f, err := strconv.ParseFloat(text, 64); err == nil && f < 0 {
		return 0, jsonfield.WantGot(field, "number >= 0", raw)
	}
	v, err := strconv.Atoi(text)
	if err != nil {
		// 2.0 is fine, 2.5 is not.
		f, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil {
			return 0, jsonfield.WantGot(field, "number", raw)
		}
		if f > 1e9 || f != float64(int(f)) {
			return 0, jsonfield.WantGot(field, "whole number", raw)
		}
		v = int(f)
	}
	if v > 1e9 {
		return 0, jsonfield.WantGot(field, "number <= 1000000000", raw)
	}
	return v, nil
}
