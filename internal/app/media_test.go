package app

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"redial/internal/call"
	"redial/internal/testenv"
)

// RTP sent by the callee crosses the bridge to the destination, and what
// the destination sends comes back: the destination SIPp echoes every
// packet (-rtp_echo), so the callee socket receiving its own packets back
// proves both directions. Hanging up frees every RTP port.
func TestBridgeRelaysRTPBothWays(t *testing.T) {
	r := testenv.StartRedis(t)
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	phonePort := phone.LocalAddr().(*net.UDPAddr).Port
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_extmedia.xml"),
		Args: []string{"-m", "1", "-key", "rtp_port", strconv.Itoa(phonePort)}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"),
		Args: []string{"-m", "1", "-rtp_echo"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15551239000", "line_group": []string{"g1"}, "destination": dest("8888")})

	var info call.Info
	testenv.WaitFor(t, 10*time.Second, func() error {
		n.get("/api/v1/calls/"+ref, &info)
		if info.State != call.StateBridged || len(info.Legs) != 2 {
			return fmt.Errorf("state %s, %d legs", info.State, len(info.Legs))
		}
		return nil
	})
	if info.Legs[0].Codec != "PCMU" || info.Legs[1].Codec != "PCMU" {
		t.Fatalf("legs: %+v", info.Legs)
	}
	nodeRTP := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: info.Legs[0].LocalPort}

	// Two rounds: the first latches both remotes (and the relay hands the
	// settled stream to the kernel when it can); the second then crosses
	// the bridge in the kernel both ways.
	const packets = 50
	buf := make([]byte, 1500)
	round := func(first int) {
		t.Helper()
		sent := map[uint16][]byte{}
		for i := first; i < first+packets; i++ {
			pkt := make([]byte, 12+160)
			pkt[0], pkt[1] = 0x80, 0 // V=2, PT=0 PCMU
			binary.BigEndian.PutUint16(pkt[2:], uint16(1000+i))
			binary.BigEndian.PutUint32(pkt[4:], uint32(i*160))
			binary.BigEndian.PutUint32(pkt[8:], 0xC0FFEE)
			for j := 12; j < len(pkt); j++ {
				pkt[j] = byte(i + j)
			}
			sent[uint16(1000+i)] = pkt
			if _, err := phone.WriteToUDP(pkt, nodeRTP); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		phone.SetReadDeadline(time.Now().Add(10 * time.Second))
		for got < packets*9/10 {
			nr, from, err := phone.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("received %d of %d echoed packets: %v", got, packets, err)
			}
			if from.Port != nodeRTP.Port {
				t.Fatalf("RTP came from %v, not the node's leg port %d (symmetric RTP)", from, nodeRTP.Port)
			}
			seq := binary.BigEndian.Uint16(buf[2:])
			want, ok := sent[seq]
			if !ok {
				continue // a late echo of the round before
			}
			if !bytes.Equal(buf[:nr], want) {
				t.Fatalf("packet seq %d changed on its way through the bridge", seq)
			}
			got++
		}
	}
	round(0)
	round(packets)
	// Hang up through the API: both legs get BYE and every port is freed.
	req, _ := http.NewRequest(http.MethodDelete, n.api+"/api/v1/calls/"+ref, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Disposition != "ANSWERED" || c.Variables["redial_hangup_side"] != "api" {
		t.Fatalf("cdr: %+v", c)
	}
	waitSipp(t, carrier, 10*time.Second)
	waitSipp(t, destination, 10*time.Second)
	testenv.WaitFor(t, 5*time.Second, func() error {
		if u := n.Ports.InUse(); u != 0 {
			return fmt.Errorf("%d RTP ports still in use", u)
		}
		return nil
	})
	// The node runs as root in CI, so the settled stream went through the
	// kernel: the second round at least, both ways.
	if !n.Ports.KernelForwarding() {
		if os.Getenv("CI") != "" {
			t.Fatal("in-kernel rtp forwarding is off (needs CAP_BPF and CAP_NET_ADMIN)")
		}
		t.Log("in-kernel rtp forwarding unavailable; the userspace relay carried the stream")
	} else if k := n.Ports.KernelForwarded(); k < 2*packets*9/10 {
		t.Fatalf("the kernel forwarded %d packets, want at least the second round's %d both ways", k, packets)
	}
}
