package config

import (
	"flag"
	"strings"
	"testing"
)

func parse(t *testing.T, args []string, env map[string]string) (*Node, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	done := Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return done()
}

func TestDefaults(t *testing.T) {
	n, err := parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Redis != "redis://127.0.0.1:6379/0" || n.Domain != "default" || n.HTTP != "127.0.0.1:8088" {
		t.Fatalf("defaults: %+v", n)
	}
	if len(n.SIP) != 2 || n.SIP[0] != (Listener{"udp", "0.0.0.0:5060"}) || n.SIP[1] != (Listener{"tcp", "0.0.0.0:5060"}) {
		t.Fatalf("sip listeners: %+v", n.SIP)
	}
	if n.RTPMin != 16384 || n.RTPMax != 32767 || n.NotifyPrefix != "enigma:notifications" {
		t.Fatalf("defaults: %+v", n)
	}
}

func TestEnvAndFlagPrecedence(t *testing.T) {
	n, err := parse(t, []string{"--domain", "flagdom"}, map[string]string{
		"REDIAL_DOMAIN": "envdom", "REDIAL_RTP_PORTS": "20000-20100", "REDIAL_SIP_PUBLIC_IP": "192.0.2.7",
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.Domain != "flagdom" {
		t.Fatalf("flag must win over env, got %q", n.Domain)
	}
	if n.RTPMin != 20000 || n.RTPMax != 20100 || n.SIPPublicIP != "192.0.2.7" {
		t.Fatalf("env not applied: %+v", n)
	}
}

func TestValidationNamesTheSetting(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--rtp-ports", "5000"}, "--rtp-ports (REDIAL_RTP_PORTS)"},
		{[]string{"--sip", "sctp:1.2.3.4:5060"}, "--sip (REDIAL_SIP)"},
		{[]string{"--sip", "udp:1.2.3.4:99999"}, "port \"99999\""},
		{[]string{"--timezone", "Mars/Olympus"}, "--timezone (REDIAL_TIMEZONE)"},
		{[]string{"--redis", "localhost"}, "--redis (REDIAL_REDIS)"},
		{[]string{"--http", "8088"}, "--http (REDIAL_HTTP)"},
		{[]string{"--sip-public-ip", "example.com"}, "--sip-public-ip"},
		{[]string{"--notify-format", "v2"}, "--notify-format"},
	}
	for _, c := range cases {
		_, err := parse(t, c.args, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want error containing %q", c.args, err, c.want)
		}
	}
}

func TestSpecificListenerIsPublicIP(t *testing.T) {
	n, err := parse(t, []string{"--sip", "udp:127.0.0.1:5070"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.SIPPublicIP != "127.0.0.1" {
		t.Fatalf("public ip %q", n.SIPPublicIP)
	}
}
