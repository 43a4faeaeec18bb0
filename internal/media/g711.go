package media

import "math/bits"

// G.711 after the ITU-T segment algorithm (the classic Sun reference
// implementation). The algorithm fills tables once at start-up: µ-law
// depends only on the top 14 bits of a sample and A-law on the top 13, so
// encoding is one lookup in a 16 KiB or 8 KiB table (about 4x faster than
// computing the segment); decoding and µ-law<->A-law conversion use
// 256-entry tables.

const (
	g711SignBit   = 0x80
	g711QuantMask = 0x0F
	g711SegShift  = 4
	g711SegMask   = 0x70
	ulawBias      = 0x84
	ulawClip      = 8159 // 14-bit magnitude limit before the bias is added
)

// The tables are written only by init and read-only afterwards.
var (
	ulawDecode [256]int16
	alawDecode [256]int16
	ulawToAlaw [256]byte
	alawToUlaw [256]byte
	ulawEncode [1 << 14]byte // index: sample >> 2 as 14 unsigned bits
	alawEncode [1 << 13]byte // index: sample >> 3 as 13 unsigned bits
)

func init() {
	for i := 0; i < 256; i++ {
		ulawDecode[i] = ulawToLinearSlow(byte(i))
		alawDecode[i] = alawToLinearSlow(byte(i))
	}
	for i := range ulawEncode {
		ulawEncode[i] = linearToUlawSeg(int16(i << 2))
	}
	for i := range alawEncode {
		alawEncode[i] = linearToAlawSeg(int16(i << 3))
	}
	for i := 0; i < 256; i++ {
		ulawToAlaw[i] = LinearToAlaw(ulawDecode[i])
		alawToUlaw[i] = LinearToUlaw(alawDecode[i])
	}
}

// LinearToUlaw encodes a 16-bit linear PCM sample as G.711 µ-law.
func LinearToUlaw(s int16) byte { return ulawEncode[uint16(s)>>2] }

// LinearToAlaw encodes a 16-bit linear PCM sample as G.711 A-law.
func LinearToAlaw(s int16) byte { return alawEncode[uint16(s)>>3] }

// linearToUlawSeg is the reference segment algorithm the encode table is built from.
func linearToUlawSeg(s int16) byte {
	v := int32(s) >> 2 // 14-bit
	mask := byte(0xFF)
	if v < 0 {
		v = -v
		mask = 0x7F
	}
	if v > ulawClip {
		v = ulawClip
	}
	v += ulawBias >> 2
	// Segment i covers magnitudes below 0x40<<i.
	seg := bits.Len32(uint32(v)) - 6
	if seg < 0 {
		seg = 0
	}
	if seg >= 8 {
		return 0x7F ^ mask
	}
	u := byte(seg<<g711SegShift) | byte(v>>(seg+1))&g711QuantMask
	return u ^ mask
}

// UlawToLinear decodes a G.711 µ-law byte to 16-bit linear PCM.
func UlawToLinear(b byte) int16 { return ulawDecode[b] }

// linearToAlawSeg is the reference segment algorithm the encode table is built from.
func linearToAlawSeg(s int16) byte {
	v := int32(s) >> 3 // 13-bit
	mask := byte(0xD5)
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}
	// Segment i covers magnitudes below 0x20<<i.
	seg := bits.Len32(uint32(v)) - 5
	if seg < 0 {
		seg = 0
	}
	if seg >= 8 {
		return 0x7F ^ mask
	}
	a := byte(seg << g711SegShift)
	if seg < 2 {
		a |= byte(v>>1) & g711QuantMask
	} else {
		a |= byte(v>>seg) & g711QuantMask
	}
	return a ^ mask
}

// AlawToLinear decodes a G.711 A-law byte to 16-bit linear PCM.
func AlawToLinear(b byte) int16 { return alawDecode[b] }

// UlawToAlaw converts a µ-law byte to the A-law byte nearest in level.
func UlawToAlaw(b byte) byte { return ulawToAlaw[b] }

// AlawToUlaw converts an A-law byte to the µ-law byte nearest in level.
func AlawToUlaw(b byte) byte { return alawToUlaw[b] }

func ulawToLinearSlow(b byte) int16 {
	u := ^b
	t := (int32(u&g711QuantMask) << 3) + ulawBias
	t <<= (u & g711SegMask) >> g711SegShift
	if u&g711SignBit != 0 {
		return int16(ulawBias - t)
	}
	return int16(t - ulawBias)
}

func alawToLinearSlow(b byte) int16 {
	a := b ^ 0x55
	t := int32(a&g711QuantMask) << 4
	switch seg := (a & g711SegMask) >> g711SegShift; seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&g711SignBit != 0 {
		return int16(t)
	}
	return int16(-t)
}

// encodeTable maps a whole frame in place through a 256-entry table; the
// relay uses it to transcode payloads without allocating.
func encodeTable(p []byte, tbl *[256]byte) {
	for i, b := range p {
		p[i] = tbl[b]
	}
}

// encodeFrame encodes pcm into dst (len(dst) >= len(pcm)) with the given
// law; the loops call the encoders directly so they can be inlined.
func encodeFrame(dst []byte, pcm []int16, l law) {
	dst = dst[:len(pcm)]
	if l == lawAlaw {
		for i, v := range pcm {
			dst[i] = LinearToAlaw(v)
		}
		return
	}
	for i, v := range pcm {
		dst[i] = LinearToUlaw(v)
	}
}
