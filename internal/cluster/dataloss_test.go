package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

type detectorUnderTest struct {
	*DataLossDetector
	st  *store.Store
	log *testenv.SyncBuffer
	reg *prometheus.Registry
}

// startDetector runs a detector checking every 50 ms until the test ends,
// and waits for its first check (its marker in Redis).
func startDetector(t *testing.T, st *store.Store, cfg DataLossConfig, now func() time.Time) *detectorUnderTest {
	t.Helper()
	cfg.Host = "n1"
	cfg.Every = 50 * time.Millisecond
	buf := &testenv.SyncBuffer{}
	d := &detectorUnderTest{st: st, log: buf, reg: prometheus.NewRegistry()}
	var err error
	d.DataLossDetector, err = NewDataLossDetector(cfg, DataLossDeps{Store: st, Registry: d.reg, Now: now,
		Logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	d.waitMarker(t)
	return d
}

// waitMarker waits until the detector has (re)written its marker.
func (d *detectorUnderTest) waitMarker(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, func() error {
		n, err := d.st.Client().Exists(context.Background(), d.st.DataMarkerKey("n1")).Result()
		if err != nil || n != 1 {
			return fmt.Errorf("marker not written (exists=%d, %v)", n, err)
		}
		return nil
	})
}

// waitChecks waits until n more checks have completed.
func (d *detectorUnderTest) waitChecks(t *testing.T, n int64) {
	t.Helper()
	target := d.checks.Load() + n
	testenv.WaitFor(t, 10*time.Second, func() error {
		if got := d.checks.Load(); got < target {
			return fmt.Errorf("%d checks, waiting for %d", got, target)
		}
		return nil
	})
}

func (d *detectorUnderTest) metrics() (lost, losses, restarts float64) {
	return metricValue(d.mLost), metricValue(d.mLosses), metricValue(d.mRestarts)
}

func (d *detectorUnderTest) waitAlarm(t *testing.T) string {
	t.Helper()
	var alarms []string
	testenv.WaitFor(t, 15*time.Second, func() error {
		if alarms = d.Alarms(); len(alarms) == 0 {
			return fmt.Errorf("no alarm; log:\n%s", d.log.String())
		}
		return nil
	})
	if len(alarms) != 1 {
		t.Fatalf("alarms: %q", alarms)
	}
	return alarms[0]
}

func writeConfig(t *testing.T, r *testenv.Redis) {
	t.Helper()
	ctx := context.Background()
	if err := r.Client.HSet(ctx, "cti_line@default", "l1", `{"params":{"group":"g1","uri":"sip:x"}}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.HSet(ctx, "cti_queue_dialer_task@template", "t1", `{"params":{"enable":true}}`).Err(); err != nil {
		t.Fatal(err)
	}
}

// Redis restarted with its data (AOF): a run_id change and no alarm.
func TestDataLossRestartWithDataNoAlarm(t *testing.T) {
	r := testenv.StartRedisWith(t, testenv.RedisOptions{AOF: true})
	writeConfig(t, r)
	d := startDetector(t, newStore(t, r, "n1"), DataLossConfig{}, nil)
	r.Stop()
	r.Restart(t)
	testenv.WaitFor(t, 15*time.Second, func() error {
		if _, _, restarts := d.metrics(); restarts != 1 {
			return fmt.Errorf("%v restarts seen", restarts)
		}
		return nil
	})
	d.waitChecks(t, 2)
	if !strings.Contains(d.log.String(), "redis restarted or failed over with its data") {
		t.Fatalf("restart not logged:\n%s", d.log.String())
	}
	if a := d.Alarms(); len(a) != 0 {
		t.Fatalf("alarm after a restart that kept the data: %q", a)
	}
	if lost, losses, _ := d.metrics(); lost != 0 || losses != 0 || strings.Contains(d.log.String(), "level=ERROR") {
		t.Fatalf("data_lost=%v data_loss_total=%v after a restart that kept the data:\n%s", lost, losses, d.log.String())
	}
}

// Redis restarted empty: one ERROR naming the run_ids and what is gone,
// the gauge at 1, the counter at 1, an alarm for /healthz; it clears
// once the operator has put the configuration back, and the counter
// stays.
func TestDataLossRestartEmptyRaisesAlarmOnce(t *testing.T) {
	r := testenv.StartRedis(t) // no persistence: a restart loses everything
	writeConfig(t, r)
	before, err := r.Client.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	d := startDetector(t, newStore(t, r, "n1"), DataLossConfig{}, nil)
	r.Stop()
	r.Restart(t)
	alarm := d.waitAlarm(t)
	for _, want := range []string{"redis lost its data: run_id ", " -> ", "cti_line@default, cti_queue_dialer_task@template gone",
		"queues, schedules and callbacks in that Redis are lost", "clears when cti_line@default, cti_queue_dialer_task@template exist again"} {
		if !strings.Contains(alarm, want) {
			t.Fatalf("alarm %q does not say %q", alarm, want)
		}
	}
	if id := infoRunID(before); id == "" || !strings.Contains(alarm, "run_id "+id+" -> ") {
		t.Fatalf("alarm %q does not name the old run_id %q", alarm, id)
	}
	if lost, losses, _ := d.metrics(); lost != 1 || losses != 1 {
		t.Fatalf("data_lost=%v data_loss_total=%v, want 1 and 1", lost, losses)
	}
	// Later checks keep the alarm and log nothing more.
	d.waitChecks(t, 3)
	if n := strings.Count(d.log.String(), "level=ERROR"); n != 1 || len(d.Alarms()) != 1 {
		t.Fatalf("%d ERROR lines and alarms %q after more checks, want 1 line and the alarm:\n%s", n, d.Alarms(), d.log.String())
	}

	// The operator restores the configuration: the alarm clears at the
	// next check, and every check in between logged nothing more.
	writeConfig(t, r)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if a := d.Alarms(); len(a) != 0 {
			return fmt.Errorf("alarm still up: %q", a)
		}
		return nil
	})
	d.waitChecks(t, 2)
	out := d.log.String()
	if n := strings.Count(out, "level=ERROR"); n != 1 {
		t.Fatalf("%d ERROR lines for one data loss, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "data-loss alarm cleared: the lost configuration is back") {
		t.Fatalf("clearing not logged:\n%s", out)
	}
	if lost, losses, _ := d.metrics(); lost != 0 || losses != 1 {
		t.Fatalf("after restore: data_lost=%v data_loss_total=%v, want 0 and 1", lost, losses)
	}
}

// A second loss while the first alarm is up is counted and logged again,
// and the alarm still waits for what the first one lost.
func TestDataLossTwiceKeepsWhatWasLost(t *testing.T) {
	r := testenv.StartRedis(t)
	writeConfig(t, r)
	d := startDetector(t, newStore(t, r, "n1"), DataLossConfig{}, nil)
	r.Stop()
	r.Restart(t)
	d.waitAlarm(t)
	d.waitMarker(t)
	r.Stop()
	r.Restart(t)
	testenv.WaitFor(t, 15*time.Second, func() error {
		if _, losses, _ := d.metrics(); losses != 2 {
			return fmt.Errorf("%v losses counted", losses)
		}
		return nil
	})
	if a := d.Alarms(); len(a) != 1 || !strings.Contains(a[0], "clears when cti_line@default, cti_queue_dialer_task@template exist again") {
		t.Fatalf("alarm after the second loss: %q", a)
	}
	if n := strings.Count(d.log.String(), "level=ERROR"); n != 2 {
		t.Fatalf("%d ERROR lines for two losses:\n%s", n, d.log.String())
	}
	writeConfig(t, r)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if a := d.Alarms(); len(a) != 0 {
			return fmt.Errorf("alarm still up: %q", a)
		}
		return nil
	})
}

// FLUSHALL without a restart is a data loss too; an alarm nobody restores
// clears after its hold time.
func TestDataLossFlushAllAlarmsAndClearsAfterHold(t *testing.T) {
	r := testenv.StartRedis(t)
	writeConfig(t, r)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	d := startDetector(t, newStore(t, r, "n1"), DataLossConfig{Hold: time.Hour}, now)
	if err := r.Client.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	alarm := d.waitAlarm(t)
	if !strings.Contains(alarm, "unchanged: deleted without a restart (FLUSHALL") || !strings.Contains(alarm, "clears when") ||
		!strings.Contains(alarm, "or at 2026-03-01T13:00:00Z") {
		t.Fatalf("alarm: %q", alarm)
	}
	if _, _, restarts := d.metrics(); restarts != 0 {
		t.Fatalf("%v restarts counted for a FLUSHALL", restarts)
	}
	clock.Add(int64(59 * time.Minute))
	d.waitChecks(t, 2)
	if a := d.Alarms(); len(a) == 0 {
		t.Fatal("alarm cleared before its hold time")
	}
	clock.Add(int64(time.Minute))
	testenv.WaitFor(t, 10*time.Second, func() error {
		if a := d.Alarms(); len(a) != 0 {
			return fmt.Errorf("alarm still up after its hold time: %q", a)
		}
		return nil
	})
	if !strings.Contains(d.log.String(), "cleared after its hold time; the lost configuration was not restored") {
		t.Fatalf("clearing after hold not logged:\n%s", d.log.String())
	}
	if lost, losses, _ := d.metrics(); lost != 0 || losses != 1 {
		t.Fatalf("data_lost=%v data_loss_total=%v, want 0 and 1", lost, losses)
	}
}

// The marker deleted by hand while the configuration is there is not a
// data loss: a WARN and no alarm.
func TestDataLossMarkerAloneGoneIsNoAlarm(t *testing.T) {
	r := testenv.StartRedis(t)
	writeConfig(t, r)
	d := startDetector(t, newStore(t, r, "n1"), DataLossConfig{}, nil)
	if err := r.Client.Del(context.Background(), d.st.DataMarkerKey("n1")).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(d.log.String(), "marker key vanished from Redis while configuration remains") {
			return fmt.Errorf("no WARN:\n%s", d.log.String())
		}
		return nil
	})
	if a := d.Alarms(); len(a) != 0 {
		t.Fatalf("alarm for a marker deleted by hand: %q", a)
	}
	if _, losses, _ := d.metrics(); losses != 0 {
		t.Fatalf("data_loss_total=%v", losses)
	}
}

// On a Redis Cluster the detector compares every master's run_id: a
// master killed and replaced by its replica, with the data, is a
// restart, not a loss; a FLUSHALL on every master is a loss.
func TestDataLossOnRedisCluster(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{})
	st, err := store.New(store.Config{URL: c.URL, Host: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for _, k := range []string{"cti_line@default", "cti_queue_dialer_task@template", "cti_dialplan@default"} {
		if err := c.Client.HSet(ctx, k, "x", "{}").Err(); err != nil {
			t.Fatal(err)
		}
	}
	d := startDetector(t, st, DataLossConfig{}, nil)
	ids, err := st.RunIDs(ctx)
	if err != nil || len(ids) != 3 {
		t.Fatalf("run_ids of the masters: %v, %v", ids, err)
	}
	// The master holding the lines is killed and its replica takes over,
	// with the data: the set of run_ids changes, a restart, no loss.
	c.KillMasterOf(t, "cti_line@default", 30*time.Second)
	testenv.WaitFor(t, 15*time.Second, func() error {
		if _, _, restarts := d.metrics(); restarts < 1 {
			return fmt.Errorf("failover not seen as a run_id change")
		}
		return nil
	})
	d.waitChecks(t, 2)
	if a := d.Alarms(); len(a) != 0 {
		t.Fatalf("alarm after a failover that kept the data: %q\n%s", a, d.log.String())
	}
	if err := c.Client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.FlushAll(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	// The masters are flushed one after the other; a check between two
	// flushes already forgets the keys of the first, so the alarm names
	// at least those flushed last.
	alarm := d.waitAlarm(t)
	if !strings.Contains(alarm, "FLUSHALL") || !strings.Contains(alarm, "@") || !strings.Contains(alarm, " gone") {
		t.Fatalf("alarm: %q", alarm)
	}
}

func infoRunID(info string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			return v
		}
	}
	return ""
}
