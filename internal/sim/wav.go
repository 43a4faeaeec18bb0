package sim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"
)

// Tone is one note of a generated prompt; Hz 0 is silence.
type Tone struct {
	Hz  float64
	Dur time.Duration
}

// wavRate is the rate of generated prompts: the calls' own.
const wavRate = 8000

// WriteTones writes tones, one after the other, as a 16-bit 8 kHz mono
// WAV file at path (its directory is created): the demo's prompts and
// music on hold, so that it needs no audio files. Each note fades in and
// out over 5 ms so that the joins do not click.
func WriteTones(path string, tones []Tone) error {
	var pcm []int16
	for _, t := range tones {
		n := int(t.Dur.Seconds() * wavRate)
		fade := min(wavRate*5/1000, n/2)
		for i := 0; i < n; i++ {
			if t.Hz == 0 {
				pcm = append(pcm, 0)
				continue
			}
			g := 1.0
			if i < fade {
				g = float64(i) / float64(fade)
			} else if n-1-i < fade {
				g = float64(n-1-i) / float64(fade)
			}
			pcm = append(pcm, int16(8000*g*math.Sin(2*math.Pi*t.Hz*float64(i)/wavRate)))
		}
	}
	var b bytes.Buffer
	data := uint32(2 * len(pcm))
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, 36+data)
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(wavRate), uint32(2 * wavRate), uint16(2), uint16(16)} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, data)
	binary.Write(&b, binary.LittleEndian, pcm)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("sim: write %s: %w", path, err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("sim: write %s: %w", path, err)
	}
	return nil
}
