package media

import (
	"math"
	"testing"
)

// Mid-range vectors agree with CPython's audioop (the Sun reference code);
// the whole 16-bit range was compared once when this package was written.
func TestG711ReferenceVectors(t *testing.T) {
	for _, v := range []struct {
		lin        int16
		ulaw, alaw byte
	}{
		{100, 0xF2, 0xD3}, {-100, 0x72, 0x53}, {1000, 0xCE, 0xFA}, {-1000, 0x4E, 0x7A},
		{12345, 0x97, 0xBD}, {-12345, 0x17, 0x3D},
	} {
		if u, a := LinearToUlaw(v.lin), LinearToAlaw(v.lin); u != v.ulaw || a != v.alaw {
			t.Errorf("%d: µ-law %#02x A-law %#02x, want %#02x %#02x", v.lin, u, a, v.ulaw, v.alaw)
		}
	}
}

func TestG711KnownVectors(t *testing.T) {
	ulaw := []struct {
		lin  int16
		code byte
	}{
		{0, 0xFF}, {8, 0xFE}, {-8, 0x7E}, {32767, 0x80}, {-32768, 0x00}, {32124, 0x80}, {-32124, 0x00},
	}
	for _, v := range ulaw {
		if got := LinearToUlaw(v.lin); got != v.code {
			t.Errorf("LinearToUlaw(%d) = %#02x, want %#02x", v.lin, got, v.code)
		}
	}
	udec := map[byte]int16{0xFF: 0, 0x7F: 0, 0xFE: 8, 0x7E: -8, 0x80: 32124, 0x00: -32124, 0xEF: 132, 0xDF: 396}
	for code, lin := range udec {
		if got := UlawToLinear(code); got != lin {
			t.Errorf("UlawToLinear(%#02x) = %d, want %d", code, got, lin)
		}
	}

	alaw := []struct {
		lin  int16
		code byte
	}{
		{0, 0xD5}, {-1, 0x55}, {8, 0xD5}, {-8, 0x55}, {32767, 0xAA}, {-32768, 0x2A},
	}
	for _, v := range alaw {
		if got := LinearToAlaw(v.lin); got != v.code {
			t.Errorf("LinearToAlaw(%d) = %#02x, want %#02x", v.lin, got, v.code)
		}
	}
	adec := map[byte]int16{0xD5: 8, 0x55: -8, 0xAA: 32256, 0x2A: -32256, 0xD4: 24, 0xC5: 264}
	for code, lin := range adec {
		if got := AlawToLinear(code); got != lin {
			t.Errorf("AlawToLinear(%#02x) = %d, want %d", code, got, lin)
		}
	}
}

func TestG711CodeRoundTrip(t *testing.T) {
	for i := 0; i < 256; i++ {
		b := byte(i)
		if b == 0x7F { // µ-law "negative zero" decodes to 0, which encodes as 0xFF
			continue
		}
		if got := LinearToUlaw(UlawToLinear(b)); got != b {
			t.Errorf("µ-law %#02x -> %d -> %#02x", b, UlawToLinear(b), got)
		}
		if got := LinearToAlaw(AlawToLinear(b)); got != b {
			t.Errorf("A-law %#02x -> %d -> %#02x", b, AlawToLinear(b), got)
		}
	}
}

// quantization error of G.711 stays within half a step, which is at most
// 1/32 of the level plus the smallest step.
func TestG711LinearRoundTripError(t *testing.T) {
	prevU, prevA := int16(math.MinInt16), int16(math.MinInt16)
	for x := math.MinInt16; x <= math.MaxInt16; x++ {
		s := int16(x)
		bound := math.Abs(float64(x))/16 + 16
		u := UlawToLinear(LinearToUlaw(s))
		a := AlawToLinear(LinearToAlaw(s))
		if e := math.Abs(float64(u) - float64(x)); e > bound && math.Abs(float64(x)) < 32124 {
			t.Fatalf("µ-law round trip of %d gives %d (error %.0f > %.0f)", x, u, e, bound)
		}
		if e := math.Abs(float64(a) - float64(x)); e > bound {
			t.Fatalf("A-law round trip of %d gives %d (error %.0f > %.0f)", x, a, e, bound)
		}
		if u < prevU || a < prevA {
			t.Fatalf("G.711 round trip not monotonic at %d", x)
		}
		prevU, prevA = u, a
	}
}

func TestG711Transcode(t *testing.T) {
	if got := UlawToAlaw(0xFF); got != 0xD5 {
		t.Errorf("UlawToAlaw(silence 0xFF) = %#02x, want 0xD5", got)
	}
	if got := AlawToUlaw(0xD5); got != 0xFE {
		t.Errorf("AlawToUlaw(0xD5 = +8) = %#02x, want 0xFE (+8)", got)
	}
	for i := 0; i < 256; i++ {
		b := byte(i)
		lu := float64(UlawToLinear(b))
		if la := float64(AlawToLinear(UlawToAlaw(b))); math.Abs(la-lu) > math.Abs(lu)/16+16 {
			t.Errorf("UlawToAlaw(%#02x): level %v -> %v", b, lu, la)
		}
		la := float64(AlawToLinear(b))
		if lu := float64(UlawToLinear(AlawToUlaw(b))); math.Abs(la-lu) > math.Abs(la)/16+16 {
			t.Errorf("AlawToUlaw(%#02x): level %v -> %v", b, la, lu)
		}
		// Relaying A-law through a µ-law leg and back must not drift.
		if got := UlawToAlaw(AlawToUlaw(UlawToAlaw(b))); got != UlawToAlaw(b) {
			t.Errorf("A-law %#02x changes on a second µ-law round trip: %#02x", UlawToAlaw(b), got)
		}
	}
}

func TestCodecByName(t *testing.T) {
	for name, want := range map[string]Codec{"pcmu": PCMU, "PCMA": PCMA, "Telephone-Event": TelephoneEvent} {
		got, ok := CodecByName(name)
		if !ok || got != want {
			t.Errorf("CodecByName(%q) = %v, %v; want %v", name, got, ok, want)
		}
	}
	for _, name := range []string{"g729", "opus", ""} {
		if _, ok := CodecByName(name); ok {
			t.Errorf("CodecByName(%q) = true, want false", name)
		}
	}
}

// BenchmarkEncodeFrame is the cost of encoding one 20 ms frame (160 samples).
func BenchmarkEncodeFrame(b *testing.B) {
	pcm := make([]int16, 160)
	NewTone(1000, 12000, 0).ReadFrame(pcm)
	out := make([]byte, 160)
	for _, c := range []struct {
		name string
		law  law
	}{{"ulaw", lawUlaw}, {"alaw", lawAlaw}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				encodeFrame(out, pcm, c.law)
			}
		})
	}
}
