package testenv

import (
	"reflect"
	"testing"
)

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_evalsha:calls=3037,usec=9000,usec_per_call=2.96,rejected_calls=0,failed_calls=1\r\n" +
		"cmdstat_cluster|info:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_lpush:calls=7,usec=5,usec_per_call=0.71,rejected_calls=0,failed_calls=0\r\n"
	got := ParseCommandStats(info)
	want := map[string]int64{"evalsha": 3037, "cluster|info": 12, "lpush": 7}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseCommandStats = %v, want %v", got, want)
	}
}
