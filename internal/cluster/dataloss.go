package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/store"
)

// DataLossConfig configures a DataLossDetector.
type DataLossConfig struct {
	// Host is this node's name; it selects the node's marker key.
	Host string
	// Every is how often Redis is checked (default 5s).
	Every time.Duration
	// Hold is how long the alarm stays up when the lost configuration is
	// not restored (default 1h).
	Hold time.Duration
}

// DataLossDeps are the detector's collaborators.
type DataLossDeps struct {
	Store    *store.Store
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Now is the clock of the alarm's hold time (default time.Now).
	Now func() time.Time
}

// DataLossDetector tells an operator, loudly, that Redis lost its data: a
// restart without persistence, a failover to a replica that had nothing,
// a FLUSHALL. Every component copes with such a Redis on its own (lines
// and tasks vanish, queues are empty), so without it the node would carry
// on quietly with nothing to do while every queued number, schedule and
// callback plan is gone.
//
// How it knows: the node writes a marker key into Redis and remembers
// which configuration hashes (ConfigKeys: lines, tasks, dialplan, ...)
// exist. Nodes never write those, so when the marker and every one of
// them vanish between two checks, the data set is gone. The server's
// run_id (INFO server) says whether Redis restarted meanwhile, which goes
// into the message; a run_id change with the data intact (AOF, a failover
// to a synced replica) is only an INFO line. A data set deleted without a
// restart (FLUSHALL) raises the alarm too: data gone is data gone. A
// marker gone while configuration remains (deleted by hand, evicted under
// maxmemory) is a WARN, not an alarm.
//
// On Redis Cluster the run_ids of every master are compared
// (ForEachMaster); the marker lives on one shard, and the alarm needs every
// known key gone, so a single shard that restarts empty is reported as a
// restart, not as a loss, unless it held all of them.
//
// The alarm (Alarms, the gauge redial_redis_data_lost) stays up until the
// configuration keys that were lost exist again (the operator restored or
// re-provisioned them) or for Hold, whichever comes first; a node restart
// also clears it, being in memory. redial_redis_data_loss_total counts
// every loss for alert rules that must not miss one.
type DataLossDetector struct {
	cfg DataLossConfig
	st  *store.Store
	log *slog.Logger
	now func() time.Time

	// Only Run's goroutine touches these.
	runIDs        map[string]string
	known         map[string]bool // keys that existed at the last check, marker included
	markerWritten time.Time
	// checks counts the checks that reached Redis (tests wait on it).
	checks atomic.Int64

	mu    sync.Mutex
	alarm *dataLossAlarm

	mLost     prometheus.Gauge
	mLosses   prometheus.Counter
	mRestarts prometheus.Counter
}

type dataLossAlarm struct {
	at   time.Time
	text string
	// lost are the configuration keys that vanished; the alarm clears
	// once all of them exist again.
	lost []string
}

// NewDataLossDetector builds a detector; Run checks Redis.
func NewDataLossDetector(cfg DataLossConfig, deps DataLossDeps) (*DataLossDetector, error) {
	if cfg.Host == "" {
		return nil, errors.New("cluster: data-loss detector: Host is required")
	}
	if deps.Store == nil {
		return nil, errors.New("cluster: data-loss detector: Store is required")
	}
	if cfg.Every <= 0 {
		cfg.Every = 5 * time.Second
	}
	if cfg.Hold <= 0 {
		cfg.Hold = time.Hour
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	d := &DataLossDetector{cfg: cfg, st: deps.Store, log: deps.Logger.With("component", "cluster"), now: deps.Now,
		mLost: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_redis_data_lost",
			Help: "1 while this node reports that Redis lost its data (see /healthz), else 0."}),
		mLosses: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_redis_data_loss_total",
			Help: "Times this node found that Redis had lost its data."}),
		mRestarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_redis_restarts_total",
			Help: "Redis run_id changes seen by this node (restarts and failovers, with or without data)."}),
	}
	if deps.Registry != nil {
		for _, c := range []prometheus.Collector{d.mLost, d.mLosses, d.mRestarts} {
			if err := deps.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("cluster: data-loss detector: register metrics: %w", err)
			}
		}
	}
	return d, nil
}

// Alarms describes the data loss this node is reporting, with when it
// clears; empty when none. For /healthz.
func (d *DataLossDetector) Alarms() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.alarm == nil {
		return nil
	}
	clears := "at " + d.alarm.at.Add(d.cfg.Hold).UTC().Format(time.RFC3339)
	if len(d.alarm.lost) > 0 {
		clears = "when " + strings.Join(d.alarm.lost, ", ") + " exist again, or " + clears
	}
	return []string{fmt.Sprintf("%s (seen %s; clears %s)", d.alarm.text, d.alarm.at.UTC().Format(time.RFC3339), clears)}
}

// Checks is how many checks have reached Redis so far.
func (d *DataLossDetector) Checks() int64 { return d.checks.Load() }

// Run checks Redis every Every until ctx is cancelled.
func (d *DataLossDetector) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Every)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, d.cfg.Every)
		d.check(cctx)
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// check reads the run_ids and which known keys exist, decides, and
// rewrites the marker when it is missing. A failed read changes nothing:
// Redis being away is the other components' news.
func (d *DataLossDetector) check(ctx context.Context) {
	ids, err := d.st.RunIDs(ctx)
	if err != nil {
		d.log.Debug("cluster: data-loss check: reading run_id failed", "error", err)
		return
	}
	marker := d.st.DataMarkerKey(d.cfg.Host)
	keys := append([]string{marker}, d.st.ConfigKeys()...)
	exist, err := d.st.ExistingKeys(ctx, keys)
	if err != nil {
		d.log.Debug("cluster: data-loss check: reading keys failed", "error", err)
		return
	}
	// A restart between the two reads would pair the old run_id with the
	// new data set; the next check sees both from one server.
	if again, err := d.st.RunIDs(ctx); err != nil || !maps.Equal(again, ids) {
		return
	}
	now := d.now()
	restarted := d.runIDs != nil && !maps.Equal(d.runIDs, ids)
	if restarted {
		d.mRestarts.Inc()
	}
	var lost []string
	gone := len(d.known) > 0 && !exist[marker]
	for k := range d.known {
		if exist[k] {
			gone = false
		} else if k != marker {
			lost = append(lost, k)
		}
	}
	sort.Strings(lost)
	before, after := store.FormatRunIDs(d.runIDs), store.FormatRunIDs(ids)
	switch {
	case gone:
		d.raise(now, restarted, before, after, lost)
	case len(d.known) > 0 && !exist[marker]:
		d.log.Warn("cluster: this node's marker key vanished from Redis while configuration remains (deleted by hand? evicted under maxmemory?); not a data loss",
			"key", marker)
	case restarted:
		d.log.Info("cluster: redis restarted or failed over with its data", "run_id_before", before, "run_id", after)
	}
	if !gone {
		d.maybeClear(now, exist)
	}
	d.runIDs = ids
	if !exist[marker] || now.Sub(d.markerWritten) >= store.MarkerTTL/2 {
		if err := d.st.WriteDataMarker(ctx, d.cfg.Host, after); err != nil {
			d.log.Debug("cluster: data-loss check: writing the marker failed", "error", err)
		} else {
			exist[marker] = true
			d.markerWritten = now
		}
	}
	d.known = map[string]bool{}
	for k, ok := range exist {
		if ok {
			d.known[k] = true
		}
	}
	d.checks.Add(1)
}

// raise logs the loss once and raises the alarm. A loss while the alarm
// for an earlier one is up keeps that one's lost keys: they are still to
// be restored.
func (d *DataLossDetector) raise(now time.Time, restarted bool, before, after string, lost []string) {
	d.mu.Lock()
	if d.alarm != nil {
		for _, k := range d.alarm.lost {
			if !slices.Contains(lost, k) {
				lost = append(lost, k)
			}
		}
		sort.Strings(lost)
	}
	d.mu.Unlock()
	how := "run_id " + before + " unchanged: deleted without a restart (FLUSHALL, FLUSHDB or every key by hand)"
	if restarted {
		how = "run_id " + before + " -> " + after
	}
	what := "this node's marker key gone"
	if len(lost) > 0 {
		what = strings.Join(lost, ", ") + " gone"
	}
	text := "redis lost its data: " + how + "; " + what + "; queues, schedules and callbacks in that Redis are lost"
	d.log.Error(text, "run_id_before", before, "run_id", after, "lost_keys", lost)
	d.mLosses.Inc()
	d.mLost.Set(1)
	d.mu.Lock()
	d.alarm = &dataLossAlarm{at: now, text: text, lost: lost}
	d.mu.Unlock()
}

// maybeClear ends the alarm once what was lost is back, or after Hold.
func (d *DataLossDetector) maybeClear(now time.Time, exist map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.alarm
	if a == nil {
		return
	}
	restored := len(a.lost) > 0
	for _, k := range a.lost {
		restored = restored && exist[k]
	}
	switch {
	case restored:
		d.log.Info("cluster: redis data-loss alarm cleared: the lost configuration is back", "keys", a.lost, "raised", a.at)
	case now.Sub(a.at) >= d.cfg.Hold:
		d.log.Warn("cluster: redis data-loss alarm cleared after its hold time; the lost configuration was not restored",
			"keys", a.lost, "raised", a.at, "hold", d.cfg.Hold)
	default:
		return
	}
	d.alarm = nil
	d.mLost.Set(0)
}
