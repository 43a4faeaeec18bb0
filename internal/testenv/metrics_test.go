package testenv

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric sums the series whose labels include the ones asked for, tells a
// metric with no such series from one at zero, and reads gauges as well
// as counters.
func TestMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_calls_total", Help: "h"}, []string{"kind", "result"})
	depth := prometheus.NewGauge(prometheus.GaugeOpts{Name: "t_depth", Help: "h"})
	reg.MustRegister(calls, depth)
	calls.WithLabelValues("cdr", "ok").Add(3)
	calls.WithLabelValues("cdr", "spooled").Add(2)
	calls.WithLabelValues("ack", "ok").Add(5)
	depth.Set(7)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
		found  bool
	}{
		{"t_calls_total", nil, 10, true},
		{"t_calls_total", map[string]string{"kind": "cdr"}, 5, true},
		{"t_calls_total", map[string]string{"kind": "cdr", "result": "ok"}, 3, true},
		{"t_calls_total", map[string]string{"kind": "none"}, 0, false},
		{"t_calls_total", map[string]string{"other": "x"}, 0, false},
		{"t_depth", nil, 7, true},
		{"t_absent", nil, 0, false},
	} {
		if v, found := Metric(t, reg, c.name, c.labels); v != c.want || found != c.found {
			t.Errorf("Metric(%s, %v) = %v, %v; want %v, %v", c.name, c.labels, v, found, c.want, c.found)
		}
	}
}
