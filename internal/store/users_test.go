package store

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"redial/internal/testenv"
)

// Users are read from cti_user@<domain> as integrators write them:
// numbers for strings, "false" for false, unknown fields ignored; a bad
// entry is reported with the user, the key and the field, and never hides
// the good ones.
func TestUsersDecodeLikeTheOtherContracts(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme"})
	ctx := context.Background()
	if s.UsersKey() != "cti_user@acme" {
		t.Fatalf("UsersKey = %q", s.UsersKey())
	}
	entries := map[string]string{
		"1001":     `{"params": {"password": "s3cret", "name": "Alice", "enable": true, "color": "blue"}, "variables": {"team": "sales", "level": 2}, "extra": [1]}`,
		"1002":     `{"params": {"password": 1234, "name": 42, "enable": "false"}}`,
		"1003":     `{"params": {"name": "no password"}}`,
		"1004":     `{"params": {"password": "p", "enable": "maybe"}}`,
		"1005":     `not json`,
		"bad ext":  `{"params": {"password": "p"}}`,
		"1006":     `{"params": {"password": "p"}, "variables": {"sip_h_X": "a\r\nEvil: 1"}}`,
		"alice.b+": `{"params": {"password": "p"}}`,
	}
	for ext, v := range entries {
		if err := r.Client.HSet(ctx, "cti_user@acme", ext, v).Err(); err != nil {
			t.Fatal(err)
		}
	}

	u, found, err := s.User(ctx, "1001")
	if err != nil || !found {
		t.Fatalf("User(1001) = %+v, %v, %v", u, found, err)
	}
	if u.Ext != "1001" || u.Password != "s3cret" || u.Name != "Alice" || !u.Enable ||
		!maps.Equal(u.Variables, map[string]string{"team": "sales", "level": "2"}) {
		t.Fatalf("User(1001) = %+v", u)
	}
	u, found, err = s.User(ctx, "1002")
	if err != nil || !found || u.Password != "1234" || u.Name != "42" || u.Enable {
		t.Fatalf("User(1002) = %+v, %v, %v; want password \"1234\", disabled", u, found, err)
	}
	if u, found, err := s.User(ctx, "9999"); err != nil || found {
		t.Fatalf("User(9999) = %+v, %v, %v; want not found", u, found, err)
	}
	_, found, err = s.User(ctx, "1003")
	if found || err == nil || err.Error() != `store: user "1003" in cti_user@acme: params.password: required` {
		t.Fatalf("User(1003) = %v, %v", found, err)
	}
	if _, _, err := s.User(ctx, "a b"); err == nil || !strings.Contains(err.Error(), `store: user "a b" in cti_user@acme: extension:`) {
		t.Fatalf("User(\"a b\") error = %v", err)
	}

	users, bad, err := s.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var exts []string
	for _, u := range users {
		exts = append(exts, u.Ext)
	}
	if !slices.Equal(exts, []string{"1001", "1002", "alice.b+"}) {
		t.Fatalf("Users = %v, want 1001, 1002, alice.b+", exts)
	}
	want := map[string]string{
		"1003":    "params.password: required",
		"1004":    `params.enable: want bool, got "maybe"`,
		"1005":    "invalid JSON",
		"bad ext": "extension: character ' ' not allowed",
		"1006":    "variables.sip_h_X: contains CR/LF",
	}
	if len(bad) != len(want) {
		t.Fatalf("bad = %v, want entries for %v", bad, slices.Sorted(maps.Keys(want)))
	}
	for ext, frag := range want {
		msg := bad[ext].Error()
		if !strings.HasPrefix(msg, `store: user "`+ext+`" in cti_user@acme: `) || !strings.Contains(msg, frag) {
			t.Errorf("bad[%q] = %q, want it to name the user, the key and %q", ext, msg, frag)
		}
	}
}

func TestValidateExtension(t *testing.T) {
	for _, ok := range []string{"1", "1001", "alice.smith", "a_b-c+1", strings.Repeat("9", MaxExtensionLen)} {
		if err := ValidateExtension(ok); err != nil {
			t.Errorf("ValidateExtension(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "..", ".", "a b", "1001@evil", "a/b", "a;b", "ä", "a\r\nb", "%41", strings.Repeat("9", MaxExtensionLen+1)} {
		if err := ValidateExtension(bad); err == nil {
			t.Errorf("ValidateExtension(%q) accepted", bad)
		}
	}
}

func TestSetUserRefusesWhatWouldNotDecode(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	ctx := context.Background()
	if err := s.SetUser(ctx, "1001", `{"params": {"name": "x"}}`); err == nil || !strings.Contains(err.Error(), "params.password: required") {
		t.Fatalf("SetUser without password: %v", err)
	}
	if err := s.SetUser(ctx, "1 1", `{"params": {"password": "p"}}`); err == nil {
		t.Fatal("SetUser with a bad extension accepted")
	}
	if n, _ := r.Client.HLen(ctx, "cti_user@default").Result(); n != 0 {
		t.Fatalf("refused users were written: %d fields", n)
	}
	if err := s.SetUser(ctx, "1001", `{"params": {"password": "p"}}`); err != nil {
		t.Fatal(err)
	}
	if u, found, err := s.User(ctx, "1001"); err != nil || !found || u.Password != "p" || !u.Enable {
		t.Fatalf("User after SetUser = %+v, %v, %v", u, found, err)
	}
}
