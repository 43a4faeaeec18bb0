package media

import (
	"io"
	"math"
	"time"
)

// NewSilence returns a source of d of digital silence (a pause between
// prompts); d <= 0 gives an empty source.
func NewSilence(d time.Duration) Source {
	return &silence{left: max(0, int64(d/(time.Second/SampleRate)))}
}

type silence struct{ left int64 }

func (s *silence) ReadFrame(pcm []int16) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(pcm)), s.left))
	clear(pcm[:n])
	s.left -= int64(n)
	return n, nil
}

// DefaultSilenceThreshold is the level below which SilenceDetector calls
// audio silent when its Threshold is zero: well above the noise of a quiet
// line (about -60 dBFS) and well below speech (-30 to -10 dBFS).
const DefaultSilenceThreshold = -40.0

// LevelDBFS returns the mean power of pcm in dB relative to full scale
// (a full-scale square wave is 0 dBFS, a full-scale sine -3 dBFS). Digital
// silence gives -Inf.
func LevelDBFS(pcm []int16) float64 {
	return 10 * math.Log10(MeanPower(pcm))
}

// SilenceDetector is an energy-based silence detector: each frame fed to it
// is silent when its mean power is below Threshold, and the detector fires
// once silent frames have followed each other for Hold. The zero value
// works (-40 dBFS, fires on the first silent frame). It is not safe for
// concurrent use.
type SilenceDetector struct {
	// Threshold is the level in dBFS (see LevelDBFS) below which a frame
	// is silent; 0 means DefaultSilenceThreshold.
	Threshold float64
	// Hold is how long silence must last continuously.
	Hold time.Duration

	run    int64   // samples in the current run of silence
	thresh float64 // Threshold as a power, computed on first use
	tdB    float64 // the Threshold thresh was computed for
}

// Feed adds a frame of 8 kHz audio and reports whether the current run of
// silence, including this frame, has lasted at least Hold.
func (d *SilenceDetector) Feed(pcm []int16) bool {
	if len(pcm) == 0 {
		return d.Fired()
	}
	if d.thresh == 0 || d.tdB != d.Threshold {
		t := d.Threshold
		if t == 0 {
			t = DefaultSilenceThreshold
		}
		d.thresh, d.tdB = math.Pow(10, t/10), d.Threshold
	}
	if MeanPower(pcm) < d.thresh {
		d.run += int64(len(pcm))
	} else {
		d.run = 0
	}
	return d.Fired()
}

// Fired reports whether the current run of silence has lasted Hold. With
// nothing fed yet there is no silence.
func (d *SilenceDetector) Fired() bool {
	return d.run > 0 && d.Silent() >= d.Hold
}

// Silent returns how long the current run of silence has lasted.
func (d *SilenceDetector) Silent() time.Duration {
	return time.Duration(d.run) * time.Second / SampleRate
}

// Reset forgets the current run of silence.
func (d *SilenceDetector) Reset() { d.run = 0 }
