package testenv

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric is the value of metric name as a scrape of g shows it: the sum
// of its series whose labels include every pair in labels (all its
// series when labels is nil), counters, gauges and untyped alike. found
// is false when no series matches.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) (v float64, found bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("testenv: gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, want := range labels {
				got, ok := "", false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k {
						got, ok = lp.GetValue(), true
					}
				}
				if !ok || got != want {
					continue series
				}
			}
			found = true
			switch {
			case m.Counter != nil:
				v += m.GetCounter().GetValue()
			case m.Gauge != nil:
				v += m.GetGauge().GetValue()
			case m.Untyped != nil:
				v += m.GetUntyped().GetValue()
			}
		}
	}
	return v, found
}

// MustMetric is Metric, failing the test when no series matches.
func MustMetric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, found := Metric(t, g, name, labels)
	if !found {
		t.Fatalf("testenv: metric %s%s not registered", name, fmtLabels(labels))
	}
	return v
}

func fmtLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	return fmt.Sprint(labels)
}
