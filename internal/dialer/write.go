package dialer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"redial/internal/store"
)

// ErrNoTask is returned by PatchTask for a task the template does not
// define.
var ErrNoTask = errors.New("no such task")

// InvalidTaskError is a task value WriteTask refused; Err names the key
// and field.
type InvalidTaskError struct{ Err error }

func (e *InvalidTaskError) Error() string { return e.Err.Error() }
func (e *InvalidTaskError) Unwrap() error { return e.Err }

// WriteTask checks value the way every node will read it (merged with the
// other level of onHost, "" for the template) and, when it passes, writes
// it and publishes the seed's change notice. Nothing is written when the
// check fails; the error names the key and field.
func WriteTask(ctx context.Context, st *store.Store, onHost, name, value string, loc *time.Location) error {
	tmpl, host, err := st.TasksOf(ctx, onHost)
	if err != nil {
		return err
	}
	if onHost == "" {
		tmpl[name] = value
	} else {
		host[name] = value
	}
	if _, err := ParseTask(st.TaskHostKey(onHost), st.TaskTemplateKey(), name, tmpl[name], host[name], loc); err != nil {
		return &InvalidTaskError{Err: err}
	}
	return st.SetTask(ctx, onHost, name, value)
}

// PatchTask sets fields of params of the template's task name (the
// dashboard's enable and limit), keeping every other field as it is, and
// writes it through WriteTask. It returns the value written.
func PatchTask(ctx context.Context, st *store.Store, name string, params map[string]any, loc *time.Location) (string, error) {
	tmpl, _, err := st.TasksOf(ctx, "")
	if err != nil {
		return "", err
	}
	cur, ok := tmpl[name]
	if !ok {
		return "", fmt.Errorf("dialer: task %q in %s: %w", name, st.TaskTemplateKey(), ErrNoTask)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(cur), &doc); err != nil {
		return "", &InvalidTaskError{Err: fmt.Errorf("dialer: task %q in %s: %w", name, st.TaskTemplateKey(), err)}
	}
	var p map[string]any
	if raw, ok := doc["params"]; ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // numbers stay exactly as written
		if err := dec.Decode(&p); err != nil {
			return "", &InvalidTaskError{Err: fmt.Errorf("dialer: task %q in %s: params: %w", name, st.TaskTemplateKey(), err)}
		}
	}
	if p == nil {
		p = map[string]any{}
	}
	for k, v := range params {
		p[k] = v
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("dialer: task %q: params: %w", name, err)
	}
	doc["params"] = raw
	out, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("dialer: task %q: %w", name, err)
	}
	if err := WriteTask(ctx, st, "", name, string(out), loc); err != nil {
		return "", err
	}
	return string(out), nil
}
