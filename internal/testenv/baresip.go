package testenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BaresipOptions describe one baresip user agent.
type BaresipOptions struct {
	// User is the account's user part; INVITEs must be addressed to it
	// (sip:<User>@Addr), since baresip answers only for its accounts.
	// Default "baresip".
	User string
	// SineHz is the frequency of the sine baresip sends on every call
	// (the ausine module, 10..20000 Hz). Default 700.
	SineHz int
	// Config holds extra lines appended to baresip's config file.
	Config []string
}

// Baresip is a running baresip (package baresip-core) that answers every
// call at once, sends a sine and records what it hears. It is a real media
// peer: its own RTP stack, jitter buffer and G.711 codecs.
type Baresip struct {
	// Addr is baresip's SIP address (UDP and TCP), host:port.
	Addr string
	// User is the account user; URI is sip:User@Addr.
	User string
	URI  string
	// SineHz is the frequency baresip sends.
	SineHz int
	// Dir is the config directory; RecordDir holds the recordings.
	Dir       string
	RecordDir string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
	out  SyncBuffer
}

// StartBaresip runs baresip on 127.0.0.1 with a config of its own in the
// test's temp dir and stops it when the test ends. Modules: g711 (PCMU and
// PCMA), ausine as the audio source, sndfile to record, account and menu
// (auto-answer). No sound card module and no console UI is loaded, so
// baresip neither needs audio hardware nor reads stdin.
//
// sndfile writes two WAV files per call into RecordDir, named after the
// second the call's audio started: dump-<time>-dec.wav is what baresip
// heard (decoded, 8 kHz mono for G.711) and dump-<time>-enc.wav what it
// sent; a second call starting within the same second overwrites them, so
// tests make one call at a time. The headers are completed only when the
// call's audio stops; see WaitRecording.
func StartBaresip(t testing.TB, o BaresipOptions) *Baresip {
	t.Helper()
	bin := RequireTool(t, "baresip")
	if o.User == "" {
		o.User = "baresip"
	}
	if o.SineHz == 0 {
		o.SineHz = 700
	}
	dir := t.TempDir()
	b := &Baresip{User: o.User, SineHz: o.SineHz, Dir: dir, RecordDir: filepath.Join(dir, "recordings"), done: make(chan struct{})}
	if err := os.Mkdir(b.RecordDir, 0o755); err != nil {
		t.Fatalf("testenv: baresip: %v", err)
	}
	modDir := "/usr/lib/baresip/modules"
	if _, err := os.Stat(filepath.Join(modDir, "ausine.so")); err != nil {
		t.Fatalf("testenv: baresip modules not found in %s (install baresip-core): %v", modDir, err)
	}
	// Ports are free when chosen but can be taken by a parallel test
	// package before baresip binds them; such a start is retried on new
	// ports, any other failure ends the test.
	for attempt := 1; ; attempt++ {
		err := b.start(t, bin, modDir, o)
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(b.Log(), "Address already in use") {
			t.Fatalf("testenv: baresip exited at start (%v):\n%s", err, b.Log())
		}
		t.Logf("testenv: baresip start %d: a port was taken meanwhile; retrying on others", attempt)
	}
	t.Cleanup(func() {
		b.Stop()
		// REDIAL_TEST_LOG is what makes the node log at debug level too.
		if t.Failed() || os.Getenv("REDIAL_TEST_LOG") != "" {
			t.Logf("baresip output:\n%s", truncate([]byte(b.Log()), 8000))
		}
	})
	return b
}

// start writes the config for freshly chosen ports, runs baresip and waits
// until it is ready. It returns an error when baresip exits before.
func (b *Baresip) start(t testing.TB, bin, modDir string, o BaresipOptions) error {
	t.Helper()
	dir := b.Dir
	// baresip listens for SIP on UDP and TCP at the port and for SIP/TLS
	// one above it.
	port := freePorts(t, 2)
	b.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	b.URI = fmt.Sprintf("sip:%s@%s", b.User, b.Addr)
	// baresip picks RTP ports at random in this range and retries on a
	// port that is taken; starting at a free port keeps it away from the
	// node's RTP range (below 32768) and from the usual suspects.
	rtp := FreePort(t) &^ 1
	if rtp+100 > 65535 {
		rtp = 40000
	}
	cfg := []string{
		"poll_method epoll",
		"sip_listen " + b.Addr,
		// Without this baresip puts the first non-loopback address into
		// its SDP, and the node would send RTP there.
		"net_interface 127.0.0.1",
		"call_local_timeout 120",
		"call_max_calls 4",
		"audio_buffer 20-160",
		fmt.Sprintf("audio_source ausine,%d", o.SineHz),
		// ausine produces 48 kHz stereo only; baresip resamples to the codec.
		"ausrc_srate 48000",
		"ausrc_channels 2",
		"audio_level no",
		"ausrc_format s16",
		"auplay_format s16",
		"auenc_format s16",
		"audec_format s16",
		fmt.Sprintf("rtp_ports %d-%d", rtp, rtp+99),
		"rtcp_mux no",
		// No jitter buffer: baresip decodes each packet as it arrives, so
		// the recording is exactly what was received. With one (min 1) the
		// last frame stays buffered once the sender pauses and is never
		// recorded, so a 2 s prompt would be heard as 1.98 s.
		"jitter_buffer_delay 0-0",
		"rtp_stats no",
		"statmode_default off",
		"module_path " + modDir,
		"module g711.so",
		"module sndfile.so",
		"module ausine.so",
		"module_tmp account.so",
		"module_app menu.so",
		"snd_path " + b.RecordDir,
	}
	cfg = append(cfg, o.Config...)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatalf("testenv: baresip: %v", err)
		}
	}
	write("config", strings.Join(cfg, "\n")+"\n")
	write("accounts", fmt.Sprintf("<sip:%s@127.0.0.1>;regint=0;answermode=auto\n", b.User))
	write("contacts", "")

	// In the foreground (no -d) so the test owns the process; -v logs the
	// media pipeline, which is what one needs when a media test fails.
	b.out.Reset()
	b.done = make(chan struct{})
	b.cmd = exec.Command(bin, "-f", dir, "-v")
	b.cmd.Dir = dir
	b.cmd.Stdout = &b.out
	b.cmd.Stderr = &b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("testenv: start baresip: %v", err)
	}
	done := b.done
	go func() {
		b.err = b.cmd.Wait()
		close(done)
	}()
	var exited error
	WaitFor(t, 10*time.Second, func() error {
		select {
		case <-done:
			exited = fmt.Errorf("%v", b.err)
			return nil
		default:
		}
		if !strings.Contains(b.Log(), "baresip is ready.") {
			return errors.New("baresip not ready yet")
		}
		return nil
	})
	return exited
}

// Log returns what baresip has printed so far.
func (b *Baresip) Log() string { return b.out.String() }

// Done is closed when baresip exits.
func (b *Baresip) Done() <-chan struct{} { return b.done }

// Stop ends baresip the way a user would (SIGTERM: calls are hung up and
// recordings closed), and kills it if it has not exited within 5 s.
func (b *Baresip) Stop() {
	select {
	case <-b.done:
		return
	default:
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
}

// Recording is the pair of files sndfile wrote for one call.
type Recording struct {
	Heard string // what baresip received, decoded
	Sent  string // what baresip sent, before encoding
}

// WaitRecording waits until count calls have ended at baresip and their
// recordings are complete (sndfile writes the header's sizes when the
// call's audio stops), and returns them oldest first.
func (b *Baresip) WaitRecording(t testing.TB, count int, timeout time.Duration) []Recording {
	t.Helper()
	var recs []Recording
	WaitFor(t, timeout, func() error {
		// A file without audio yet looks complete too; the call's end
		// (logged before the files are closed) tells the two apart.
		if ended := strings.Count(b.Log(), " terminated (duration"); ended < count {
			return fmt.Errorf("%d calls ended at baresip, want %d", ended, count)
		}
		// sndfile stamps each dump with the second it opened it in, so a
		// call's two files can differ by a second: they pair by order.
		heard, err := filepath.Glob(filepath.Join(b.RecordDir, "dump-*-dec.wav"))
		if err != nil {
			return err
		}
		sent, err := filepath.Glob(filepath.Join(b.RecordDir, "dump-*-enc.wav"))
		if err != nil {
			return err
		}
		if len(heard) != len(sent) {
			return fmt.Errorf("%d decode and %d encode dumps in %s", len(heard), len(sent), b.RecordDir)
		}
		sort.Strings(heard)
		sort.Strings(sent)
		recs = recs[:0]
		for i, h := range heard {
			r := Recording{Heard: h, Sent: sent[i]}
			for _, f := range []string{r.Heard, r.Sent} {
				if err := wavComplete(f); err != nil {
					return err
				}
			}
			recs = append(recs, r)
		}
		if len(recs) != count {
			return fmt.Errorf("%d complete baresip recordings in %s, want %d", len(recs), b.RecordDir, count)
		}
		return nil
	})
	return recs
}

// wavComplete reports whether a WAV file's RIFF and data chunk sizes agree
// with its length, that is whether its writer has closed it.
func wavComplete(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var hdr [12]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return fmt.Errorf("%s: header: %w", path, err)
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return fmt.Errorf("%s: not a RIFF/WAVE file", path)
	}
	if riff := int64(binary.LittleEndian.Uint32(hdr[4:8])); riff+8 != fi.Size() {
		return fmt.Errorf("%s: RIFF size %d but file has %d bytes: still being written", path, riff, fi.Size())
	}
	for {
		var ch [8]byte
		if _, err := io.ReadFull(f, ch[:]); err != nil {
			return fmt.Errorf("%s: no data chunk: %w", path, err)
		}
		size := int64(binary.LittleEndian.Uint32(ch[4:8]))
		if string(ch[0:4]) == "data" {
			pos, _ := f.Seek(0, io.SeekCurrent)
			if pos+size != fi.Size() {
				return fmt.Errorf("%s: data size %d but %d bytes follow: still being written", path, size, fi.Size()-pos)
			}
			return nil
		}
		if _, err := f.Seek(size+size&1, io.SeekCurrent); err != nil {
			return err
		}
	}
}
