package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"redial/internal/testenv"
)

// Issue 9: the CLI writes numbers straight to Redis; it applies the same
// checks as the dialers, so CR/LF, huge numbers and paths never get there.
func TestCLIRefusesInjectionAndBadNumbers(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	f := filepath.Join(t.TempDir(), "n.jsonl")
	os.WriteFile(f, []byte(strings.Join([]string{
		`{"params":{"number":"15550000001"},"variables":{"sip_h_X-Evil":"1\r\nVia: x"}}`,
		`{"params":{"number":"15550000002"},"variables":{"origination_caller_id_name":"a\nb"}}`,
		`{"params":{"number":"../../etc"}}`,
		`{"params":{"number":"` + strings.Repeat("1", 100) + `"}}`,
		`{"params":{"number":"15550000003"},"variables":{"sip_h_X-Good":"ok"}}`,
	}, "\n")+"\n"), 0o644)
	if err := numbersPush(ctx, []string{"q", f, "--redis", r.URL}); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Client.LRange(ctx, "q", 0, -1).Result()
	if len(got) != 1 || !strings.Contains(got[0], "X-Good") {
		t.Fatalf("queue: %q", got)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--var", "sip_h_X-Evil=1\r\nVia: x"}, "schedule add: variables.sip_h_X-Evil: contains CR/LF"},
		{[]string{"--var", "origination_caller_id_name=a\nb"}, "schedule add: variables.origination_caller_id_name: contains CR/LF"},
		{[]string{"--number", "../../etc"}, `schedule add: params.number[0]: "../../etc": may not start with '.'`},
		{[]string{"--number", strings.Repeat("9", 1<<20)}, "schedule add: params.number[0]: 1048576 characters, at most 64"},
	} {
		args := append([]string{"--at", "+1h", "--config", "c", "--redis", r.URL}, c.args...)
		if !hasFlag(c.args, "--number") {
			args = append(args, "--number", "15550000004")
		}
		err := scheduleAdd(ctx, args)
		if err == nil || err.Error() != c.want {
			t.Errorf("%.60q: %v, want %s", c.args, err, c.want)
		}
	}
	if n, _ := r.Client.ZCard(ctx, "cti_schedule_dialer_number@default").Result(); n != 0 {
		t.Fatalf("%d refused members written", n)
	}
	err := eventCmd(ctx, []string{"push", "voicemail_saved", "--account", "a\r\nb", "--vmbox", "v", "--redis", r.URL})
	if err == nil || err.Error() != "event push: account_id: contains CR/LF" {
		t.Fatalf("event push: %v", err)
	}
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name {
			return true
		}
	}
	return false
}
