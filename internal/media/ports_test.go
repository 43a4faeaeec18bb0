package media

import (
	"errors"
	"sync"
	"testing"
)

func TestPortPoolEvenPortsAndExhaustion(t *testing.T) {
	p, err := NewPortPool(10001, 10010)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for {
		port, err := p.Get()
		if err != nil {
			if !errors.Is(err, ErrNoPorts) {
				t.Fatalf("Get on an exhausted pool: %v, want ErrNoPorts", err)
			}
			break
		}
		got = append(got, port)
	}
	want := []int{10002, 10004, 10006, 10008, 10010}
	if len(got) != len(want) {
		t.Fatalf("Get handed out %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Get handed out %v, want %v", got, want)
		}
	}
	if p.InUse() != 5 {
		t.Fatalf("InUse = %d, want 5", p.InUse())
	}
	p.Put(10006)
	p.Put(10002)
	if p.InUse() != 3 {
		t.Fatalf("InUse after two Puts = %d, want 3", p.InUse())
	}
	// Freed ports come back in the order they were freed.
	for _, w := range []int{10006, 10002} {
		if port, err := p.Get(); err != nil || port != w {
			t.Fatalf("Get = %d, %v; want %d", port, err, w)
		}
	}
}

func TestPortPoolDoesNotReuseJustFreedPort(t *testing.T) {
	p, err := NewPortPool(20000, 20006)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Get()
	p.Put(a)
	b, _ := p.Get()
	if b == a {
		t.Fatalf("port %d handed out again right after Put while others were free", a)
	}
	seen := map[int]bool{a: true, b: true}
	p.Put(b)
	for i := 0; i < 2; i++ {
		c, _ := p.Get()
		if seen[c] {
			t.Fatalf("port %d reused before the rest of the pool", c)
		}
		seen[c] = true
	}
}

func TestPortPoolIgnoresBadPut(t *testing.T) {
	p, err := NewPortPool(30000, 30002)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Get()
	p.Put(a)
	p.Put(a)     // double
	p.Put(12345) // foreign
	if p.InUse() != 0 {
		t.Fatalf("InUse = %d, want 0", p.InUse())
	}
	x, _ := p.Get()
	y, _ := p.Get()
	if x == y {
		t.Fatalf("double Put let port %d be handed out twice", x)
	}
	if _, err := p.Get(); err == nil {
		t.Fatal("Get on a 2-port pool succeeded three times")
	}
}

func TestPortPoolBadRanges(t *testing.T) {
	for _, r := range [][2]int{{10, 5}, {0, 10}, {10001, 10001}, {60000, 70000}} {
		if _, err := NewPortPool(r[0], r[1]); err == nil {
			t.Errorf("NewPortPool(%d, %d) succeeded", r[0], r[1])
		}
	}
}

func TestPortPoolConcurrent(t *testing.T) {
	p, err := NewPortPool(40000, 40198) // 100 ports
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	held := map[int]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				port, err := p.Get()
				if err != nil {
					continue
				}
				mu.Lock()
				if held[port] {
					t.Errorf("port %d handed out twice", port)
				}
				held[port] = true
				mu.Unlock()
				mu.Lock()
				delete(held, port)
				mu.Unlock()
				p.Put(port)
			}
		}()
	}
	wg.Wait()
	if p.InUse() != 0 {
		t.Fatalf("InUse = %d after all Puts, want 0", p.InUse())
	}
}
