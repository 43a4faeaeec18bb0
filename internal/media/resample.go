package media

import (
	"fmt"
	"math"
)

// Resampler design. Prompts come at 44.1 or 48 kHz; naive decimation to
// 8 kHz folds everything between 4 and 24 kHz back into the telephone band
// (a 6 kHz component becomes an audible 2 kHz whistle), so the conversion
// is a rational polyphase filter: upsample by L, low-pass, decimate by M,
// computing only the outputs that survive decimation. The prototype is a
// Kaiser-windowed sinc with passband edge 0.85 and stopband edge 1.05 of the
// lower Nyquist frequency (3.4 and 4.2 kHz at 8 kHz output) and 75 dB
// stopband attenuation. The stopband edge is a little above Nyquist so the
// filter stays short: only 4.0-4.2 kHz can fold, into 3.8-4.0 kHz, above
// the 3.4 kHz a telephone channel carries anyway.
const (
	resamplePassband    = 0.85
	resampleStopband    = 1.05
	resampleAttenuation = 75.0 // dB
)

// Resampler converts mono 16-bit audio from one sample rate to another. It
// is streaming: feed input in chunks of any size with Resample and call
// Flush once at the end. The output is aligned with the input (the filter
// delay is compensated) and has ceil(inputs*outRate/inRate) samples in
// total. After its history buffer has grown to the largest chunk it sees,
// it does not allocate as long as dst has room.
//
// A Resampler is not safe for concurrent use.
type Resampler struct {
	inRate, outRate int
	l, m            int       // out/in = l/m in lowest terms
	taps            int       // coefficients per phase
	half            int       // filter delay in prototype samples
	coef            []float32 // l phases of taps coefficients, each reversed for a forward dot product
	through         bool      // inRate == outRate

	// hist holds input samples; hist[0] is input index histBase. The stream
	// is preceded by taps-1 zeros so the first outputs need no special case.
	hist     []float32
	histBase int64
	inCount  int64 // real input samples received
	// The next output n is computed from inputs up to index jhi with
	// coefficient phase phi, where n*m + half = jhi*l + phi.
	jhi      int64
	phi      int
	outCount int64
	flushed  bool
}

// NewResampler returns a resampler from inRate to outRate Hz.
func NewResampler(inRate, outRate int) (*Resampler, error) {
	if inRate <= 0 || outRate <= 0 || inRate > 1_000_000 || outRate > 1_000_000 {
		return nil, fmt.Errorf("media: resampler: rates %d -> %d Hz out of range", inRate, outRate)
	}
	g := gcd(inRate, outRate)
	r := &Resampler{inRate: inRate, outRate: outRate, l: outRate / g, m: inRate / g}
	if inRate == outRate {
		r.through = true
		return r, nil
	}
	r.design()
	return r, nil
}

// design computes the polyphase coefficients.
func (r *Resampler) design() {
	// The prototype runs at inRate*l; frequencies below are relative to it.
	protoRate := float64(r.inRate) * float64(r.l)
	nyq := float64(min(r.inRate, r.outRate)) / 2
	fp, fs := resamplePassband*nyq, resampleStopband*nyq
	cutoff := (fp + fs) / 2 / protoRate // cycles per prototype sample
	width := 2 * math.Pi * (fs - fp) / protoRate
	n := int(math.Ceil((resampleAttenuation-8)/(2.285*width))) + 1
	// Whole taps per phase, odd prototype length so it has an exact centre.
	r.taps = (n + r.l - 1) / r.l
	total := r.taps * r.l
	if total%2 == 0 {
		total--
	}
	half := (total - 1) / 2
	r.half = half
	beta := 0.1102 * (resampleAttenuation - 8.7)
	i0beta := besselI0(beta)

	proto := make([]float64, r.taps*r.l)
	var sum float64
	for i := 0; i < total; i++ {
		x := float64(i - half)
		sinc := 2 * cutoff
		if x != 0 {
			sinc = math.Sin(2*math.Pi*cutoff*x) / (math.Pi * x)
		}
		ratio := x / float64(half)
		w := besselI0(beta*math.Sqrt(max(0, 1-ratio*ratio))) / i0beta
		proto[i] = sinc * w
		sum += proto[i]
	}
	// Unity gain at DC: the l phases together sum to l.
	scale := float64(r.l) / sum
	r.coef = make([]float32, r.l*r.taps)
	for phi := 0; phi < r.l; phi++ {
		for k := 0; k < r.taps; k++ {
			// Coefficient k of phase phi multiplies input jhi-k; stored
			// reversed so input jhi-taps+1 .. jhi meets coef[0 .. taps-1].
			r.coef[phi*r.taps+r.taps-1-k] = float32(proto[phi+k*r.l] * scale)
		}
	}
	// Output n sits at prototype position n*m + half, so output 0 lines up
	// with input 0 despite the filter's delay of half prototype samples.
	r.jhi, r.phi = int64(half/r.l), half%r.l
	r.hist = make([]float32, r.taps-1, r.taps-1+4096)
	r.histBase = -int64(r.taps - 1)
}

// Rates returns the input and output sample rates.
func (r *Resampler) Rates() (in, out int) { return r.inRate, r.outRate }

// Resample consumes in and appends every output sample that in completes
// to dst, returning the extended slice.
func (r *Resampler) Resample(dst []int16, in []int16) []int16 {
	if r.flushed {
		return dst
	}
	r.inCount += int64(len(in))
	if r.through {
		r.outCount += int64(len(in))
		return append(dst, in...)
	}
	r.compact()
	for _, v := range in {
		r.hist = append(r.hist, float32(v))
	}
	return r.produce(dst, r.histBase+int64(len(r.hist)))
}

// Flush appends the outputs still owed at the end of the stream, treating
// the input as silent after its last sample. Later calls do nothing.
func (r *Resampler) Flush(dst []int16) []int16 {
	if r.flushed || r.through {
		r.flushed = true
		return dst
	}
	r.flushed = true
	want := (r.inCount*int64(r.l) + int64(r.m) - 1) / int64(r.m)
	if r.outCount >= want {
		return dst
	}
	// Pad with silence up to the newest input the last output needs.
	r.compact()
	last := ((want-1)*int64(r.m) + int64(r.half)) / int64(r.l)
	for r.histBase+int64(len(r.hist)) <= last {
		r.hist = append(r.hist, 0)
	}
	return r.produceUpTo(dst, r.histBase+int64(len(r.hist)), want)
}

// produce computes outputs while their newest input is below avail.
func (r *Resampler) produce(dst []int16, avail int64) []int16 {
	return r.produceUpTo(dst, avail, math.MaxInt64)
}

func (r *Resampler) produceUpTo(dst []int16, avail, limit int64) []int16 {
	taps := r.taps
	for r.jhi < avail && r.outCount < limit {
		start := int(r.jhi - r.histBase - int64(taps) + 1)
		x := r.hist[start : start+taps]
		c := r.coef[r.phi*taps : r.phi*taps+taps]
		dst = append(dst, clip16(dot(x, c)))
		r.outCount++
		r.phi += r.m
		r.jhi += int64(r.phi / r.l)
		r.phi %= r.l
	}
	return dst
}

// dot is the filter's inner product. Four accumulators let the additions
// overlap instead of each waiting for the previous one (about twice as fast).
func dot(x, c []float32) float32 {
	c = c[:len(x)]
	var a0, a1, a2, a3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		xs, cs := x[i:i+4:i+4], c[i:i+4:i+4]
		a0 += xs[0] * cs[0]
		a1 += xs[1] * cs[1]
		a2 += xs[2] * cs[2]
		a3 += xs[3] * cs[3]
	}
	for ; i < len(x); i++ {
		a0 += x[i] * c[i]
	}
	return (a0 + a1) + (a2 + a3)
}

// compact drops history no future output needs, moving the rest to the
// front so the buffer's capacity is reused instead of growing.
func (r *Resampler) compact() {
	keepFrom := r.jhi - int64(r.taps) + 1 - r.histBase
	if keepFrom <= 0 {
		return
	}
	if keepFrom >= int64(len(r.hist)) {
		r.histBase += int64(len(r.hist))
		r.hist = r.hist[:0]
		return
	}
	n := copy(r.hist, r.hist[keepFrom:])
	r.hist = r.hist[:n]
	r.histBase += keepFrom
}

func clip16(v float32) int16 {
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	case v >= 0:
		return int16(v + 0.5)
	default:
		return int16(v - 0.5)
	}
}

// besselI0 is the zeroth-order modified Bessel function of the first kind,
// by its power series (converges fast for the beta values used here).
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 200; k++ {
		f := x / (2 * float64(k))
		term *= f * f
		sum += term
		if term < sum*1e-17 {
			break
		}
	}
	return sum
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
