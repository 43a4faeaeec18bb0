package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"redial/internal/jsonfield"
	"redial/internal/validate"
)

// Agent users (seed 001: agents register with their extension and
// password).
//
//	cti_user@<domain>   HASH field = extension, value =
//	                    {"params": {"password": "...", "name": "...", "enable": true},
//	                     "variables": {...}}
//
// Integrators write this hash, so its values are decoded like the other
// cti_ contracts: numbers may stand for strings ("password": 1234), booleans
// may be "true"/1, unknown fields are ignored, and an error names the user,
// the key and the field.

// MaxExtensionLen is the longest extension, in characters.
const MaxExtensionLen = 32

// User is one agent of cti_user@<domain>.
type User struct {
	// Ext is the extension, the hash field: what the agent registers as
	// and what a dialplan "user" target names.
	Ext string
	// Password is the SIP digest password.
	Password string
	// Name is a display name; may be empty.
	Name string
	// Enable is false for a user who may not register (the default is
	// true).
	Enable bool
	// Variables are channel variables of calls to and from the agent.
	Variables map[string]string
}

// UsersKey is the hash of agent users, cti_user@<domain>.
func (s *Store) UsersKey() string { return "cti_user@" + s.cfg.Domain }

// ValidateExtension checks an extension: 1 to MaxExtensionLen characters
// of letters, digits, '_', '.', '+' and '-' (what a SIP user part holds
// without escaping and what can never name a folder on its own, ".."
// aside, which is refused).
func ValidateExtension(ext string) error {
	if ext == "" {
		return &jsonfield.Error{Field: "extension", Msg: "empty"}
	}
	if len(ext) > MaxExtensionLen {
		return &jsonfield.Error{Field: "extension", Msg: fmt.Sprintf("%d bytes, at most %d", len(ext), MaxExtensionLen)}
	}
	for i := 0; i < len(ext); i++ {
		c := ext[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '.' || c == '+' || c == '-' {
			continue
		}
		return &jsonfield.Error{Field: "extension", Msg: fmt.Sprintf("character %q not allowed (allowed: letters, digits, _ . + -)", c)}
	}
	if ext == "." || ext == ".." {
		return &jsonfield.Error{Field: "extension", Msg: fmt.Sprintf("%q is not an extension", ext)}
	}
	return nil
}

// userError names the user and the key in front of a decoding error,
// bounded in size whatever the extension and the value hold.
func (s *Store) userError(ext string, err error) error {
	return validate.Short(fmt.Errorf("store: user %q in %s: %w", validate.Truncate(ext, 64), s.UsersKey(), err))
}

// User returns one user; found is false when the extension has no entry.
// A disabled user is returned with Enable false. An extension that is not
// valid, or an entry that does not decode, is an error naming the user,
// the key and the field.
func (s *Store) User(ctx context.Context, ext string) (u User, found bool, err error) {
	if err := ValidateExtension(ext); err != nil {
		return User{}, false, s.userError(ext, err)
	}
	raw, found, err := s.hgetFound(ctx, s.UsersKey(), ext)
	if err != nil || !found {
		return User{}, false, err
	}
	u, err = decodeUser(ext, raw)
	if err != nil {
		return User{}, false, s.userError(ext, err)
	}
	return u, true, nil
}

// Users returns every user that decodes, ordered by extension, and in bad
// the error of every entry that does not (by hash field). err is set only
// when the hash could not be read.
func (s *Store) Users(ctx context.Context) (users []User, bad map[string]error, err error) {
	m, err := s.hgetAll(ctx, s.UsersKey())
	if err != nil {
		return nil, nil, err
	}
	bad = map[string]error{}
	for ext, raw := range m {
		err := ValidateExtension(ext)
		var u User
		if err == nil {
			u, err = decodeUser(ext, raw)
		}
		if err != nil {
			bad[ext] = s.userError(ext, err)
			continue
		}
		users = append(users, u)
	}
	sort.Slice(users, func(i, j int) bool { return users[i].Ext < users[j].Ext })
	return users, bad, nil
}

// SetUser writes one user's JSON into cti_user@<domain> (CLI, demo,
// tests), refusing a value that would not decode.
func (s *Store) SetUser(ctx context.Context, ext, value string) error {
	if err := ValidateExtension(ext); err != nil {
		return s.userError(ext, err)
	}
	if _, err := decodeUser(ext, value); err != nil {
		return s.userError(ext, err)
	}
	if err := s.rdb.HSet(ctx, s.UsersKey(), ext, value).Err(); err != nil {
		return fmt.Errorf("store: HSET %s %s: %w", s.UsersKey(), ext, err)
	}
	return nil
}

// decodeUser decodes one hash value; the error names the JSON field at
// fault, and the caller adds the user and the key.
func decodeUser(ext, raw string) (User, error) {
	u := User{Ext: ext, Enable: true}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &top); err != nil {
		return u, &jsonfield.Error{Msg: "invalid JSON: " + err.Error()}
	}
	if top == nil {
		return u, &jsonfield.Error{Msg: "want a JSON object, got null"}
	}
	params, err := jsonfield.Object("params", top["params"])
	if err != nil {
		return u, err
	}
	if params == nil {
		return u, &jsonfield.Error{Field: "params", Msg: "missing"}
	}
	if u.Password, err = jsonfield.String("params.password", params["password"], true); err != nil {
		return u, err
	}
	if u.Password == "" {
		return u, &jsonfield.Error{Field: "params.password", Msg: "required"}
	}
	if err := validate.Text("params.password", u.Password, validate.MaxRefLen); err != nil {
		return u, err
	}
	if u.Name, err = jsonfield.String("params.name", params["name"], true); err != nil {
		return u, err
	}
	if err := validate.Text("params.name", u.Name, validate.MaxNameLen); err != nil {
		return u, err
	}
	if u.Enable, err = jsonfield.Bool("params.enable", params["enable"], true); err != nil {
		return u, err
	}
	if u.Variables, err = jsonfield.Variables("variables", top["variables"]); err != nil {
		return u, err
	}
	if err := validate.Variables(u.Variables); err != nil {
		return u, err
	}
	return u, nil
}
