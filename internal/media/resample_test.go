package media

import (
	"math"
	"slices"
	"testing"
)

func sineInt16(freq, amp float64, rate, n int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(math.Round(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	return out
}

func resampleAll(t *testing.T, in []int16, from, to, chunk int) []int16 {
	t.Helper()
	r, err := NewResampler(from, to)
	if err != nil {
		t.Fatal(err)
	}
	var out []int16
	for len(in) > 0 {
		k := min(chunk, len(in))
		out = r.Resample(out, in[:k])
		in = in[k:]
	}
	return r.Flush(out)
}

// Output must not depend on how the input is cut into chunks, and has
// ceil(n*out/in) samples.
func TestResamplerStreamingIsChunkIndependent(t *testing.T) {
	for _, rates := range [][2]int{{44100, 8000}, {48000, 8000}, {16000, 8000}, {22050, 8000}, {6000, 8000}, {8000, 8000}, {11025, 8000}} {
		in := sineInt16(700, 0.5, rates[0], 12345)
		whole := resampleAll(t, in, rates[0], rates[1], len(in))
		want := (len(in)*rates[1] + rates[0] - 1) / rates[0]
		if len(whole) != want {
			t.Errorf("%v: %d samples out of %d, want %d", rates, len(whole), len(in), want)
		}
		for _, chunk := range []int{1, 37, 882} {
			if got := resampleAll(t, in, rates[0], rates[1], chunk); !slices.Equal(got, whole) {
				t.Errorf("%v: output with chunks of %d differs from one-shot", rates, chunk)
			}
		}
	}
}

// The filter delay is compensated: output n is the input at time n/8000 s,
// so a resampled sine matches the ideal 8 kHz sine sample by sample.
func TestResamplerIsTimeAligned(t *testing.T) {
	for _, from := range []int{48000, 44100, 16000, 6000} {
		in := sineInt16(440, 0.5, from, from)
		out := resampleAll(t, in, from, SampleRate, 1000)
		ideal := sineInt16(440, 0.5, SampleRate, SampleRate)
		var worst float64
		for n := 400; n < len(ideal)-400; n++ { // away from the edges the filter sees the silence beyond
			worst = max(worst, math.Abs(float64(out[n])-float64(ideal[n])))
		}
		if worst > 0.005*16384 {
			t.Errorf("%d Hz: worst deviation from the ideal 8 kHz sine %.0f, want <= 0.5%% of the amplitude", from, worst)
		}
	}
}

func TestResamplerRejectsBadRates(t *testing.T) {
	for _, r := range [][2]int{{0, 8000}, {8000, -1}, {2_000_000, 8000}} {
		if _, err := NewResampler(r[0], r[1]); err == nil {
			t.Errorf("NewResampler(%d, %d) succeeded", r[0], r[1])
		}
	}
}

func TestResamplerDoesNotAllocate(t *testing.T) {
	r, err := NewResampler(44100, 8000)
	if err != nil {
		t.Fatal(err)
	}
	in := sineInt16(1000, 0.5, 44100, 882)
	dst := make([]int16, 0, 1024)
	for i := 0; i < 5; i++ {
		dst = r.Resample(dst[:0], in)
	}
	if a := testing.AllocsPerRun(200, func() { dst = r.Resample(dst[:0], in) }); a != 0 {
		t.Fatalf("%v allocations per 20 ms chunk, want 0", a)
	}
}

// BenchmarkResample48kTo8k is the cost of one 20 ms frame of a 48 kHz prompt.
func BenchmarkResample48kTo8k(b *testing.B) {
	r, _ := NewResampler(48000, 8000)
	in := sineInt16(1000, 0.5, 48000, 960)
	dst := make([]int16, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		dst = r.Resample(dst[:0], in)
	}
}
