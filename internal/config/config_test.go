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
		{[]string{"--rtp-kernel", "yes"}, "--rtp-kernel (REDIAL_RTP_KERNEL): \"yes\": want auto, on or off"},
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

// --http-public-url defaults to the SIP public IP when --http listens on
// every interface, and to the --http address when it names one; REDIAL_*
// env works for both new flags.
func TestHTTPPublicURLAndAllowHosts(t *testing.T) {
	n, err := parse(t, []string{"--http", "0.0.0.0:9000", "--sip-public-ip", "192.0.2.7"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.HTTPPublicURL != "http://192.0.2.7:9000" {
		t.Fatalf("default public URL on 0.0.0.0: %q", n.HTTPPublicURL)
	}
	n, err = parse(t, []string{"--sip-public-ip", "192.0.2.7"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.HTTPPublicURL != "http://127.0.0.1:8088" || len(n.HTTPAllowHosts) != 0 {
		t.Fatalf("default public URL on 127.0.0.1: %q, allow %v", n.HTTPPublicURL, n.HTTPAllowHosts)
	}
	if n, err = parse(t, []string{"--http", "127.0.0.1:0"}, nil); err != nil || n.HTTPPublicURL != "" {
		t.Fatalf("port 0 leaves the public URL to the app: %q, %v", n.HTTPPublicURL, err)
	}
	n, err = parse(t, nil, map[string]string{
		"REDIAL_HTTP_PUBLIC_URL": "https://redial.example.com/",
		"REDIAL_HTTP_ALLOW_HOST": " Redial-1.example.com , pbx ",
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.HTTPPublicURL != "https://redial.example.com" {
		t.Fatalf("public URL from env: %q", n.HTTPPublicURL)
	}
	if len(n.HTTPAllowHosts) != 2 || n.HTTPAllowHosts[0] != "redial-1.example.com" || n.HTTPAllowHosts[1] != "pbx" {
		t.Fatalf("allow hosts from env: %q", n.HTTPAllowHosts)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--http-public-url", "ftp://x"}, "--http-public-url (REDIAL_HTTP_PUBLIC_URL)"},
		{[]string{"--http-public-url", "http://"}, "--http-public-url"},
		{[]string{"--http-public-url", "http://x:99999"}, "--http-public-url"},
		{[]string{"--http-public-url", "http://x/?a=b"}, "--http-public-url"},
		{[]string{"--http-allow-host", "good.example,evil.example:8088"}, `--http-allow-host (REDIAL_HTTP_ALLOW_HOST): "evil.example:8088"`},
		{[]string{"--http-allow-host", "*.example.com"}, "--http-allow-host"},
		{[]string{"--http-allow-host", "http://x"}, "--http-allow-host"},
	} {
		if _, err := parse(t, c.args, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want error containing %q", c.args, err, c.want)
		}
	}
}
