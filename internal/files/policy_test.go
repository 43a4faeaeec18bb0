package files

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// These tests only call Check: they open no connection.

func TestPolicyRefusesNonPublic(t *testing.T) {
	p, err := NewAddrPolicy(nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ ip, class string }{
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"fc00::1", "private"},
		{"fd12:3456::1", "private"},
		{"::ffff:10.0.0.1", "private"},
		{"64:ff9b::a00:1", "private"},        // NAT64 of 10.0.0.1
		{"2002:a00:1::1", "private"},         // 6to4 of 10.0.0.1
		{"2002:7f00:1::1", "loopback"},       // 6to4 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", "link-local"}, // NAT64 of 169.254.169.254
		{"64:ff9b:1::a00:1", "private"},      // local-use NAT64
		{"169.254.169.254", "link-local"},
		{"169.254.0.1", "link-local"},
		{"fe80::1", "link-local"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.254", "CGNAT"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"ff0e::1", "multicast"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.254", "reserved"},
		{"::a00:1", "reserved"},             // IPv4-compatible, deprecated
		{"100::1", "reserved"},              // discard-only
		{"2001:db8::1", "reserved"},         // documentation
		{"2001:0:4136:e378::1", "reserved"}, // Teredo
		{"192.0.2.1", "reserved"},
		{"198.18.0.1", "reserved"},
	}
	for _, c := range cases {
		ip := netip.MustParseAddr(c.ip)
		for _, host := range []string{"", "files.example.com"} {
			err := p.Check(host, ip)
			if !errors.Is(err, ErrForbiddenURL) {
				t.Errorf("Check(%q, %s) = %v, want ErrForbiddenURL", host, c.ip, err)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, c.ip) || !strings.HasSuffix(msg, "("+c.class+")") {
				t.Errorf("Check(%q, %s) = %q, want the address and class %q", host, c.ip, msg, c.class)
			}
		}
	}
}

func TestPolicyAllowsPublic(t *testing.T) {
	p, err := NewAddrPolicy(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255",
		"172.32.0.0", "192.169.0.0", "223.255.255.255", "11.0.0.1",
		"2001:4860::8888", "2a00:1450::1", "::ffff:8.8.8.8",
		"64:ff9b::808:808", // NAT64 of 8.8.8.8
		"2002:808:808::1",  // 6to4 of 8.8.8.8
	} {
		if err := p.Check("", netip.MustParseAddr(s)); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", s, err)
		}
	}
}

func TestPolicyZonesRefused(t *testing.T) {
	p, err := NewAddrPolicy([]string{"fe80::/10", "::/0", "0.0.0.0/0"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"fe80::1%eth0", "2001:4860::8888%eth0"} {
		if err := p.Check("", netip.MustParseAddr(s)); !errors.Is(err, ErrForbiddenURL) {
			t.Errorf("Check(%s) = %v, want ErrForbiddenURL", s, err)
		}
	}
	if err := p.Check("", netip.Addr{}); !errors.Is(err, ErrForbiddenURL) {
		t.Errorf("Check(invalid) = %v, want ErrForbiddenURL", err)
	}
}

func TestPolicyAllowList(t *testing.T) {
	p, err := NewAddrPolicy([]string{"127.0.0.1/32", " 10.1.0.0/16 ", "fd00::/8", "192.168.7.7",
		"::ffff:172.16.0.0/112", "Media.Internal.", "::1", ""})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host, ip string
		ok       bool
	}{
		{"", "127.0.0.1", true},
		{"", "::ffff:127.0.0.1", true},
		{"", "127.0.0.2", false},
		{"", "10.1.200.3", true},
		{"", "10.2.0.1", false},
		{"", "fd00::5", true},
		{"", "fc00::5", false},
		{"", "192.168.7.7", true},
		{"", "192.168.7.8", false},
		{"", "172.16.3.4", true}, // mapped prefix entry means 172.16.0.0/16
		{"", "172.17.0.1", false},
		{"", "::1", true},
		{"", "64:ff9b::7f00:1", true}, // NAT64 of the allowed 127.0.0.1
		{"", "64:ff9b::7f00:2", false},
		{"media.internal", "192.168.1.10", true},
		{"MEDIA.internal.", "169.254.169.254", true},
		{"media.internal", "::1", true},
		{"media.internal.evil", "192.168.1.10", false},
		{"evil-media.internal", "192.168.1.10", false},
		{"internal", "192.168.1.10", false},
		{"other", "192.168.1.10", false},
		{"", "192.168.1.10", false},
	}
	for _, c := range cases {
		err := p.Check(c.host, netip.MustParseAddr(c.ip))
		if c.ok && err != nil {
			t.Errorf("Check(%q, %s) = %v, want allowed", c.host, c.ip, err)
		}
		if !c.ok && !errors.Is(err, ErrForbiddenURL) {
			t.Errorf("Check(%q, %s) = %v, want ErrForbiddenURL", c.host, c.ip, err)
		}
	}
}

func TestPolicyBadEntries(t *testing.T) {
	for _, e := range []string{"x/99", "127.0.0.1/33", "10.0.0.256", "1.2.3", "fe80::1%eth0",
		"::g", "a..b", "host name", "bad!host", "-/8", "."} {
		_, err := NewAddrPolicy([]string{"127.0.0.1/32", e})
		if err == nil {
			t.Errorf("NewAddrPolicy(%q) accepted it", e)
			continue
		}
		if want := `files: --fetch-allow entry "` + e + `": `; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("NewAddrPolicy(%q) = %q, want it to start with %q", e, err, want)
		}
	}
}
