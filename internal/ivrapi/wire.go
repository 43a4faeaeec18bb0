package ivrapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"redial/internal/logtext"
)

// The error codes of DESIGN.md ("ivrapi"). Every failed request is answered
// with exactly one of them.
const (
	CodeBadRequest       = "bad_request"
	CodeNotFound         = "not_found"
	CodeOwned            = "owned"
	CodeNotOwner         = "not_owner"
	CodeBusy             = "busy"
	CodeInvalidComponent = "invalid_component"
	CodeForbiddenURL     = "forbidden_url"
	CodeFetchFailed      = "fetch_failed"
	CodeTooLarge         = "too_large"
	CodeUnsupportedMedia = "unsupported_media"
	CodeInternal         = "internal"
)

// Request names (seed 002 and DESIGN.md).
const (
	reqSubscribe        = "subscribe"
	reqUnsubscribe      = "unsubscribe"
	reqAccept           = "ivrapi_accept"
	reqReaccept         = "ivrapi_reaccept"
	reqAbort            = "ivrapi_abort"
	reqApply            = "ivrapi_component_apply"
	reqTerminate        = "ivrapi_component_terminate"
	reqGetPath          = "ivrapi_file_get_path"
	reqUploadTemp       = "ivrapi_file_upload_temp"
	reqUploadStatic     = "ivrapi_file_upload_static"
	reqFileUploadStatic = "file_upload_static"
)

// knownRequests are the request names; metrics label anything else
// "unknown" so an outsider cannot grow the label set.
var knownRequests = map[string]bool{reqSubscribe: true, reqUnsubscribe: true, reqAccept: true, reqReaccept: true,
	reqAbort: true, reqApply: true, reqTerminate: true, reqGetPath: true, reqUploadTemp: true, reqUploadStatic: true,
	reqFileUploadStatic: true}

// sessionRequests are the requests that name a session (key, ivrid) and
// are carried out by the node running it.
var sessionRequests = map[string]bool{reqAccept: true, reqReaccept: true, reqAbort: true, reqApply: true,
	reqTerminate: true, reqGetPath: true, reqUploadTemp: true, reqUploadStatic: true}

// classIVREvents is the one event class there is.
const classIVREvents = "ivrevents"

// Limits on request fields.
const (
	maxQID      = 64
	maxKey      = 128
	maxIVRID    = 64
	maxPath     = 512
	maxURL      = 2048
	maxData     = 32 << 10
	maxNameEcho = 64
)

// apiError is a request's failure as the client sees it.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// asAPIError turns any error into the client's view: an *apiError inside
// it as it is, anything else as internal.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{Code: CodeInternal, Message: logtext.Truncate(err.Error(), 300)}
}

// request is one parsed client frame. Fields the request does not use are
// left empty; unknown fields are ignored.
type request struct {
	Name string
	// QID is the qid as the client wrote it (a JSON number or string),
	// echoed byte for byte; nil when missing.
	QID      json.RawMessage
	Class    string
	Key      string
	IVRID    string
	Data     json.RawMessage
	Path     string
	URL      string
	DestPath string
	// Since is the reaccept's "since", -1 when absent.
	Since int64
}

// replyName is the name of the reply to a request named name: the name
// with "_result", or "error" for a frame without a usable name.
func replyName(name string) string {
	if name == "" {
		return "error"
	}
	return name + "_result"
}

// parseFrame validates one text frame. A frame whose name could be read
// returns that name with the error, so the reply can be "<name>_result".
func parseFrame(frame []byte) (*request, error) {
	// The WebSocket library does not check text frames, and encoding/json
	// would quietly turn bad bytes into U+FFFD (and a qid echoed raw would
	// make the reply an illegal text frame).
	if !utf8.Valid(frame) {
		return nil, errf(CodeBadRequest, "frame is not valid UTF-8")
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(frame, &parts); err != nil {
		if !json.Valid(frame) {
			return nil, errf(CodeBadRequest, "frame is not JSON")
		}
		return nil, errf(CodeBadRequest, "frame: want a JSON array [name, {...}]")
	}
	if len(parts) != 2 {
		return nil, errf(CodeBadRequest, "frame: want 2 elements [name, {...}], got %d", len(parts))
	}
	r := &request{Since: -1}
	if err := json.Unmarshal(parts[0], &r.Name); err != nil || r.Name == "" {
		r.Name = ""
		return r, errf(CodeBadRequest, "frame[0]: want the request name as a string")
	}
	if len(r.Name) > maxNameEcho || !printable(r.Name) {
		r.Name = ""
		return r, errf(CodeBadRequest, "frame[0]: request name too long or not printable")
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(parts[1], &body); err != nil || body == nil {
		return r, errf(CodeBadRequest, "%s: frame[1]: want an object", r.Name)
	}
	if q, ok := body["qid"]; ok {
		q = bytes.TrimSpace(q)
		if len(q) == 0 || len(q) > maxQID || (q[0] != '"' && q[0] != '-' && (q[0] < '0' || q[0] > '9')) {
			return r, errf(CodeBadRequest, "%s: qid: want a number or a string of at most %d bytes", r.Name, maxQID)
		}
		r.QID = q
	} else {
		return r, errf(CodeBadRequest, "%s: qid: required", r.Name)
	}
	if !knownRequests[r.Name] {
		return r, errf(CodeBadRequest, "unknown request %q", r.Name)
	}
	var err error
	str := func(field string, max int, required bool) string {
		if err != nil {
			return ""
		}
		raw, ok := body[field]
		if !ok || string(raw) == "null" {
			if required {
				err = errf(CodeBadRequest, "%s: %s: required", r.Name, field)
			}
			return ""
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			err = errf(CodeBadRequest, "%s: %s: want a string, got %s", r.Name, field, logtext.Truncate(string(raw), 40))
			return ""
		}
		switch {
		case required && s == "":
			err = errf(CodeBadRequest, "%s: %s: required", r.Name, field)
		case len(s) > max:
			err = errf(CodeBadRequest, "%s: %s: longer than %d bytes", r.Name, field, max)
		case !printable(s):
			err = errf(CodeBadRequest, "%s: %s: control characters or invalid UTF-8", r.Name, field)
		}
		return s
	}
	switch r.Name {
	case reqSubscribe, reqUnsubscribe:
		r.Class = str("class", 32, true)
		if err == nil && r.Class != classIVREvents {
			err = errf(CodeBadRequest, "%s: class: %q is not an event class (want %q)", r.Name, r.Class, classIVREvents)
		}
		if r.Name == reqSubscribe {
			r.Key = str("key", maxKey, false)
		}
	case reqFileUploadStatic:
		r.URL = str("url", maxURL, true)
		r.DestPath = str("destpath", maxPath, false)
	default:
		r.Key = str("key", maxKey, true)
		r.IVRID = str("ivrid", maxIVRID, true)
		switch r.Name {
		case reqApply:
			raw := bytes.TrimSpace(body["data"])
			if err == nil && (len(raw) == 0 || raw[0] != '{') {
				err = errf(CodeBadRequest, "%s: data: want the component as an object", r.Name)
			} else if err == nil && len(raw) > maxData {
				err = errf(CodeBadRequest, "%s: data: larger than %d bytes", r.Name, maxData)
			}
			r.Data = raw
		case reqGetPath:
			r.Path = str("path", maxPath, true)
		case reqUploadTemp, reqUploadStatic:
			r.URL = str("url", maxURL, true)
			r.DestPath = str("destpath", maxPath, false)
		case reqReaccept:
			if raw, ok := body["since"]; ok && string(raw) != "null" && err == nil {
				n, perr := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
				if perr != nil || n < 0 {
					err = errf(CodeBadRequest, "%s: since: want a whole number >= 0, got %s", r.Name, logtext.Truncate(string(raw), 40))
				}
				r.Since = n
			}
		}
	}
	if err != nil {
		return r, err
	}
	return r, nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		// C0, DEL, C1 and the Unicode line and paragraph separators: none
		// belongs in a key, a path or a URL.
		if c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029 {
			return false
		}
	}
	return true
}

// nullQID is the qid of a reply to a frame that had none.
var nullQID = json.RawMessage("null")

// encodeResult is the reply [<name>_result, {"qid", "result"}].
func encodeResult(name string, qid json.RawMessage, result any) []byte {
	if qid == nil {
		qid = nullQID
	}
	return mustFrame(replyName(name), struct {
		QID    json.RawMessage `json:"qid"`
		Result any             `json:"result"`
	}{qid, result})
}

// encodeError is the reply [<name>_result, {"qid", "error": {code, message}}].
func encodeError(name string, qid json.RawMessage, e *apiError) []byte {
	if qid == nil {
		qid = nullQID
	}
	return mustFrame(replyName(name), struct {
		QID   json.RawMessage `json:"qid"`
		Error *apiError       `json:"error"`
	}{qid, e})
}

// mustFrame encodes [name, body]. The bodies are built here from plain
// values, so a failure is a programming error.
func mustFrame(name string, body any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// A qid "a<b" goes back as the client wrote it, not as "a\u003cb".
	enc.SetEscapeHTML(false)
	if err := enc.Encode([]any{name, body}); err != nil {
		panic(fmt.Sprintf("ivrapi: encode %s: %v", name, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
