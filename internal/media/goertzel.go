package media

import "math"

// Goertzel returns the power of one frequency in samples, relative to full
// scale and in the same unit as MeanPower: a sine of amplitude A·32768 at
// freq gives about A²/2, so Goertzel/MeanPower near 1 means a pure tone.
// It is the building block for DTMF and tone detection.
func Goertzel(samples []int16, freq float64, rate int) float64 {
	n := len(samples)
	if n == 0 || rate <= 0 {
		return 0
	}
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2 float64
	for _, x := range samples {
		s0 := float64(x)/32768 + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * power / (float64(n) * float64(n))
}

// MeanPower returns the mean square of samples relative to full scale.
func MeanPower(samples []int16) float64 {
	if len(samples) == 0 {
		return 0
	}
	var sum float64
	for _, x := range samples {
		v := float64(x) / 32768
		sum += v * v
	}
	return sum / float64(len(samples))
}
