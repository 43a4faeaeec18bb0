package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"redial/internal/validate"
)

// Body limits. A call or schedule body carrying the most numbers and
// variables redial accepts is far below maxBody; the limit still lets a
// 1 MB number through to be refused by name (400), while anything larger
// is refused unread (413).
const (
	maxBody      = 1 << 20
	maxEventBody = 64 << 10
)

// errBodyTooLarge is a request body over its limit; writeBodyError
// answers it with 413.
type errBodyTooLarge struct{ limit int64 }

func (e *errBodyTooLarge) Error() string {
	return fmt.Sprintf("request body too large (limit %d bytes)", e.limit)
}

// readBody reads at most limit bytes of r's body. A body over the limit
// is refused unread (by its Content-Length) or as soon as the limit is
// passed, with *errBodyTooLarge, and the connection is closed after the
// answer, so a large upload costs neither memory nor reading time.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &errBodyTooLarge{limit}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &errBodyTooLarge{limit}
	}
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return b, nil
}

// decodeJSON reads r's body (at most limit bytes, see readBody) and
// decodes it into v, refusing unknown fields when strict and, always,
// anything but blanks after the JSON value.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, strict bool) error {
	b, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return onlyValue(dec)
}

// errTrailingData refuses a body holding more than its JSON value
// ({...}0, {...}{...}): what follows may be what the sender meant, and
// acting on the first value alone would hide the mistake.
var errTrailingData = errors.New("body: trailing data after the JSON value")

// onlyValue returns errTrailingData unless dec, having decoded one value,
// holds nothing more than blanks.
func onlyValue(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		return errTrailingData
	}
	return nil
}

// writeBodyError answers a request whose body was refused: 413 when it
// was too large, else 400 naming what was wrong.
func (s *Server) writeBodyError(w http.ResponseWriter, r *http.Request, err error) {
	var tl *errBodyTooLarge
	if errors.As(err, &tl) {
		// Not logged: a flood of oversize requests must not fill the log.
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": tl.Error()})
		return
	}
	s.badRequest(w, r, validate.Short(err))
}
