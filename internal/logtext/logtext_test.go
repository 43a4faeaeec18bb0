package logtext

import "testing"

func TestTruncate(t *testing.T) {
	if got := Truncate("short", 10); got != "short" {
		t.Fatalf("short: %q", got)
	}
	if got := Truncate("0123456789abc", 4); got != "0123... (13 bytes)" {
		t.Fatalf("long: %q", got)
	}
}
