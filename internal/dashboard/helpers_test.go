package dashboard

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func newTestGauge() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
}

func newTestCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "c"})
}
