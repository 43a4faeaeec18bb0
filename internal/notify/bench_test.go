package notify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

func benchPublisher(b *testing.B) (*Publisher, *testenv.Redis) {
	b.Helper()
	r := testenv.StartRedis(b)
	st, err := store.New(store.Config{URL: r.URL})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	p, err := New(Config{SpoolDir: b.TempDir()}, Deps{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p, r
}

func benchCDR(i int) *CDR {
	start := time.Now()
	ans := start.Add(3 * time.Second)
	ext := "1001"
	return &CDR{
		CallRef: fmt.Sprintf("bench-%d", i), ContactRef: "c", CampaignRef: "bench",
		ClientNumber: "27821234567", DialNumber: "27110001111", Ext: &ext,
		Disposition: "ANSWERED", SIPCode: 200, HangupCause: "NORMAL_CLEARING", Line: "l1", Attempt: 1,
		Start: start, Answer: &ans, End: ans.Add(60 * time.Second), Duration: 63, Billsec: 60,
		Variables: map[string]string{"queue": "sales", "recording": "rec.wav"},
	}
}

// BenchmarkPublishCDR publishes CDRs one after another to a real Redis
// (LPUSH + XADD in one pipeline per CDR).
func BenchmarkPublishCDR(b *testing.B) {
	p, _ := benchPublisher(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.PublishCDR(ctx, benchCDR(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
	if p.Spooled() != 0 {
		b.Fatalf("%d CDRs went to the spool with Redis up", p.Spooled())
	}
}

// BenchmarkPublishCDRParallel is many calls ending at once.
func BenchmarkPublishCDRParallel(b *testing.B) {
	p, _ := benchPublisher(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := p.PublishCDR(ctx, benchCDR(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
}

// BenchmarkPublishCDRSpooled measures the outage path: every CDR is
// appended to the spool and fsynced.
func BenchmarkPublishCDRSpooled(b *testing.B) {
	p, r := benchPublisher(b)
	ctx := context.Background()
	r.Stop()
	if err := p.PublishCDR(ctx, benchCDR(-1)); err != nil { // takes the failed push
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.PublishCDR(ctx, benchCDR(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
}

// BenchmarkReplay measures how fast a spool drains once Redis is back.
func BenchmarkReplay(b *testing.B) {
	p, r := benchPublisher(b)
	ctx := context.Background()
	r.Stop()
	for i := 0; i < b.N; i++ {
		if err := p.PublishCDR(ctx, benchCDR(i)); err != nil {
			b.Fatal(err)
		}
	}
	r.Restart(b)
	// go-redis may keep failing fast for up to a second after an outage.
	testenv.WaitFor(b, 10*time.Second, func() error { return p.store.Ping(ctx) })
	b.ResetTimer()
	if !p.drain(ctx) {
		b.Fatal("replay stopped early")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
}
