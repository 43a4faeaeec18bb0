package main

import (
	"reflect"
	"testing"
)

// The masters and their slots come from CLUSTER NODES: replicas, masters
// without slots and slots being migrated are left out, so queue names are
// placed on the master that really serves them.
func TestParseClusterNodes(t *testing.T) {
	raw := "07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected\n" +
		"67ed 127.0.0.1:30002@31002,host2 master - 0 1426238316232 2 connected 5461-10922\n" +
		"292f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 [77->-e7d1]\n" +
		"e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5459 5460\n" +
		"9999 127.0.0.1:30009@31009 master,fail - 0 0 9 disconnected\n"
	got := parseClusterNodes(raw)
	want := []clusterMasterSlots{
		{addr: "127.0.0.1:30002", slots: [][2]int{{5461, 10922}}},
		{addr: "127.0.0.1:30003", slots: [][2]int{{10923, 16383}}},
		{addr: "127.0.0.1:30001", slots: [][2]int{{0, 5459}, {5460, 5460}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseClusterNodes:\n got %+v\nwant %+v", got, want)
	}
}
