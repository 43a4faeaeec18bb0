package notify

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// The spool is a directory holding:
//
//	notify.log       append-only records: a header line, then one JSON
//	                 record per line {"kind":"cdr"|"inbound"|"outbound_call"|"settle","payload":{...}}
//	notify.progress  how far the log has been delivered (two checksummed
//	                 slots, see progressFile)
//	notify.lock      flock'ed by the one process using the directory
//	notify.corrupt   records that could not be parsed, kept for an operator
//
// The header carries a random log id. Once everything is delivered the log
// is replaced (write new file, rename) by an empty one with a new id, and
// progress naming another id is ignored: a stale progress record can then
// only make redial re-send (duplicates, dropped by cdr_id), never skip.
const (
	logName      = "notify.log"
	progressName = "notify.progress"
	lockName     = "notify.lock"
	corruptName  = "notify.corrupt"
	spoolFormat  = "redial-notify-spool"
)

// syncProgressEvery bounds how many delivered records may be re-sent after
// a power loss: progress is written (not fsynced) after every record, which
// already survives a process crash, and fsynced every this many records.
const syncProgressEvery = 64

const (
	kindCDR     = "cdr"
	kindInbound = "inbound"
	// kindOutboundCall records are call notifications of outbound calls
	// connected to an agent, for <prefix>:campaigns (before their CDR).
	kindOutboundCall = "outbound_call"
	// kindSettle records finish a claim (store.SettleOp) after the CDR
	// written before them: a claim is as durable as its CDR.
	kindSettle = "settle"
)

type spoolRecord struct {
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload"`
}

type spoolHeader struct {
	Format  string `json:"spool"`
	Version int    `json:"version"`
	ID      string `json:"id"`
}

type logID [16]byte

// spool is not safe for concurrent use; Publisher serialises access.
type spool struct {
	dir  string
	log  *os.File // O_APPEND
	lock *os.File
	prog *progressFile

	id        logID
	start     int64 // first byte after the header
	size      int64 // end of the last complete record
	next      int64 // first byte of the oldest undelivered record
	pending   int
	sinceSync int

	// Read cache of log bytes [rbufOff, rbufOff+len(rbuf)); the log is
	// append-only between compactions, so cached bytes never go stale.
	rbuf    []byte
	rbufOff int64
}

func openSpool(dir string, logger *slog.Logger) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("notify: spool dir %s: %w", dir, err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("notify: spool dir %s: %w", dir, err)
	}
	s := &spool{dir: dir, lock: lock}
	if err := s.open(logger); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *spool) open(logger *slog.Logger) error {
	pf, err := os.OpenFile(filepath.Join(s.dir, progressName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("notify: spool progress: %w", err)
	}
	s.prog = &progressFile{f: pf}

	path := filepath.Join(s.dir, logName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s.replaceLog()
	}
	if err != nil {
		return fmt.Errorf("notify: spool log: %w", err)
	}
	s.log = f
	if err := s.readHeader(); err != nil {
		// Never drop billing data: keep the unreadable file for an operator.
		aside := fmt.Sprintf("%s.unreadable-%d", path, time.Now().Unix())
		logger.Error("notify: spool log unreadable, moved aside; its records are NOT replayed",
			"path", path, "moved_to", aside, "err", err)
		f.Close()
		s.log = nil
		if rerr := os.Rename(path, aside); rerr != nil {
			return fmt.Errorf("notify: spool log %s unreadable (%v) and cannot be moved aside: %w", path, err, rerr)
		}
		return s.replaceLog()
	}
	if err := s.scan(logger); err != nil {
		return err
	}
	return s.compactIfDrained()
}

func (s *spool) readHeader() error {
	var h spoolHeader
	line, err := s.readLine(0, 4096)
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if err := json.Unmarshal(line, &h); err != nil || h.Format != spoolFormat || h.Version != 1 {
		return fmt.Errorf("header %q is not a redial notify spool v1", line)
	}
	id, err := hex.DecodeString(h.ID)
	if err != nil || len(id) != len(s.id) {
		return fmt.Errorf("header id %q", h.ID)
	}
	copy(s.id[:], id)
	s.start = int64(len(line)) + 1
	return nil
}

// scan finds the end of the last complete record (a crash mid-append leaves
// a partial line that was never acknowledged; it is cut off), loads the
// progress and counts the records still to deliver.
func (s *spool) scan(logger *slog.Logger) error {
	st, err := s.log.Stat()
	if err != nil {
		return fmt.Errorf("notify: spool log: %w", err)
	}
	off, _, ok := s.prog.load(s.id)
	if !ok {
		off = s.start
	}
	lastEnd, pending, atRecord, err := s.count(off, st.Size())
	if err != nil {
		return err
	}
	if !atRecord {
		// A checksummed slot of this log never points mid-record; be safe.
		logger.Warn("notify: spool progress does not point at a record; replaying the whole spool", "offset", off)
		off = s.start
		if lastEnd, pending, _, err = s.count(off, st.Size()); err != nil {
			return err
		}
	}
	if lastEnd < st.Size() {
		logger.Warn("notify: spool log ends in a partial record (crash during append); cutting it off",
			"bytes", st.Size()-lastEnd)
		if err := s.log.Truncate(lastEnd); err != nil {
			return fmt.Errorf("notify: spool log: truncate partial record: %w", err)
		}
		if err := s.log.Sync(); err != nil {
			return fmt.Errorf("notify: spool log: sync: %w", err)
		}
	}
	s.size, s.next, s.pending = lastEnd, off, pending
	s.rbuf, s.rbufOff = nil, 0
	return nil
}

// count reads the log up to fileSize and returns the end of the last
// complete line, how many lines start at or after off, and whether off is
// a line start (or the end of the last line).
func (s *spool) count(off, fileSize int64) (lastEnd int64, pending int, atRecord bool, err error) {
	buf := make([]byte, 1<<20)
	lastEnd = s.start
	atRecord = off == s.start
	for pos := s.start; pos < fileSize; {
		n, rerr := s.log.ReadAt(buf, pos)
		if n == 0 {
			return 0, 0, false, fmt.Errorf("notify: spool log: read at %d: %w", pos, rerr)
		}
		chunk, base := buf[:n], pos
		for {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				break
			}
			if lastEnd >= off { // lastEnd is where this line starts
				pending++
			}
			lastEnd = base + int64(i) + 1
			if lastEnd == off {
				atRecord = true
			}
			chunk, base = chunk[i+1:], lastEnd
		}
		pos += int64(n)
	}
	return lastEnd, pending, atRecord, nil
}

// replaceLog atomically installs an empty log with a fresh id.
func (s *spool) replaceLog() error {
	var id logID
	_, _ = rand.Read(id[:])
	hdr, _ := json.Marshal(spoolHeader{Format: spoolFormat, Version: 1, ID: hex.EncodeToString(id[:])})
	hdr = append(hdr, '\n')
	path := filepath.Join(s.dir, logName)
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, hdr); err != nil {
		return fmt.Errorf("notify: spool log: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("notify: spool log: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("notify: spool dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("notify: spool log: %w", err)
	}
	if s.log != nil {
		s.log.Close()
	}
	s.log, s.id = f, id
	s.start = int64(len(hdr))
	s.size, s.next, s.pending = s.start, s.start, 0
	s.rbuf, s.rbufOff = nil, 0
	if err := s.prog.store(s.next, s.id); err != nil {
		return fmt.Errorf("notify: spool progress: %w", err)
	}
	return s.prog.sync()
}

// compactIfDrained replaces a fully delivered log by an empty one so the
// spool does not grow across outages.
func (s *spool) compactIfDrained() error {
	if s.next < s.size || s.size == s.start {
		return nil
	}
	return s.replaceLog()
}

// append writes one record and fsyncs it; only then is it safe to report
// the notification as accepted.
func (s *spool) append(kind string, payload []byte) error {
	line, err := json.Marshal(spoolRecord{Kind: kind, Payload: payload})
	if err != nil {
		return fmt.Errorf("notify: spool: encode record: %w", err)
	}
	line = append(line, '\n')
	if _, err := s.log.Write(line); err != nil {
		// Cut a partial write so the next record starts on a fresh line.
		_ = s.log.Truncate(s.size)
		return fmt.Errorf("notify: spool: append to %s: %w", s.log.Name(), err)
	}
	if err := s.log.Sync(); err != nil {
		_ = s.log.Truncate(s.size)
		return fmt.Errorf("notify: spool: fsync %s: %w", s.log.Name(), err)
	}
	s.size += int64(len(line))
	s.pending++
	return nil
}

// errCorrupt marks a record that cannot be parsed (as opposed to an I/O
// error reading it, which is retried).
var errCorrupt = errors.New("corrupt spool record")

// peek returns the oldest undelivered record and the offset just after it;
// ok is false when everything is delivered.
func (s *spool) peek() (rec spoolRecord, raw []byte, end int64, ok bool, err error) {
	if s.next >= s.size {
		return rec, nil, 0, false, nil
	}
	line, err := s.readLine(s.next, s.size-s.next)
	if err != nil {
		return rec, nil, 0, true, fmt.Errorf("notify: spool: read record at %d: %w", s.next, err)
	}
	end = s.next + int64(len(line)) + 1
	if err := json.Unmarshal(line, &rec); err != nil {
		return rec, line, end, true, fmt.Errorf("%w at offset %d: %v", errCorrupt, s.next, err)
	}
	if (rec.Kind != kindCDR && rec.Kind != kindInbound && rec.Kind != kindOutboundCall && rec.Kind != kindSettle && rec.Kind != kindDisposition) || len(rec.Payload) == 0 {
		return rec, line, end, true, fmt.Errorf("%w at offset %d: kind %q", errCorrupt, s.next, rec.Kind)
	}
	return rec, line, end, true, nil
}

// readLine returns the bytes from off up to (not including) the next '\n',
// which must lie within max bytes.
func (s *spool) readLine(off, max int64) ([]byte, error) {
	if off >= s.rbufOff && off < s.rbufOff+int64(len(s.rbuf)) {
		rest := s.rbuf[off-s.rbufOff:]
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			return rest[:i], nil
		}
	}
	want := int64(64 << 10)
	for {
		if want > max {
			want = max
		}
		buf := make([]byte, want)
		n, err := s.log.ReadAt(buf, off)
		buf = buf[:n]
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			s.rbuf, s.rbufOff = buf, off
			return buf[:i], nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if int64(n) < want || want == max {
			return nil, fmt.Errorf("no end of line within %d bytes", max)
		}
		want *= 2
	}
}

// advance records that the record ending at end was delivered.
func (s *spool) advance(end int64) error {
	s.next = end
	s.pending--
	if err := s.prog.store(end, s.id); err != nil {
		return fmt.Errorf("notify: spool progress: %w", err)
	}
	s.sinceSync++
	if s.sinceSync >= syncProgressEvery {
		return s.syncProgress()
	}
	return nil
}

func (s *spool) syncProgress() error {
	s.sinceSync = 0
	if err := s.prog.sync(); err != nil {
		return fmt.Errorf("notify: spool progress: %w", err)
	}
	return nil
}

// quarantine keeps an unparseable record in notify.corrupt.
func (s *spool) quarantine(raw []byte) error {
	f, err := os.OpenFile(filepath.Join(s.dir, corruptName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(append(append([]byte(nil), raw...), '\n')); err != nil {
		return err
	}
	return f.Sync()
}

func (s *spool) close() error {
	var errs []error
	if s.prog != nil && s.prog.f != nil {
		errs = append(errs, s.prog.sync(), s.prog.f.Close())
	}
	if s.log != nil {
		errs = append(errs, s.log.Close())
	}
	if s.lock != nil {
		errs = append(errs, unlockDir(s.lock))
	}
	return errors.Join(errs...)
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// progressFile holds the delivered offset in two fixed slots written
// alternately, each checksummed. A write torn by a crash can only damage
// the slot being written; the other still holds the previous progress, so
// at most the one record delivered in between is sent again.
//
// Slot layout (40 of 64 bytes): "RNP1" | seq u64 | offset i64 | log id [16] | crc32.
type progressFile struct {
	f   *os.File
	seq uint64
}

const (
	progressSlot  = 64
	progressBytes = 40
)

var progressMagic = [4]byte{'R', 'N', 'P', '1'}

func encodeProgress(seq uint64, off int64, id logID) []byte {
	b := make([]byte, progressBytes)
	copy(b[0:4], progressMagic[:])
	binary.BigEndian.PutUint64(b[4:12], seq)
	binary.BigEndian.PutUint64(b[12:20], uint64(off))
	copy(b[20:36], id[:])
	binary.BigEndian.PutUint32(b[36:40], crc32.ChecksumIEEE(b[:36]))
	return b
}

func decodeProgress(b []byte) (seq uint64, off int64, id logID, ok bool) {
	if len(b) < progressBytes || !bytes.Equal(b[0:4], progressMagic[:]) ||
		binary.BigEndian.Uint32(b[36:40]) != crc32.ChecksumIEEE(b[:36]) {
		return 0, 0, id, false
	}
	copy(id[:], b[20:36])
	return binary.BigEndian.Uint64(b[4:12]), int64(binary.BigEndian.Uint64(b[12:20])), id, true
}

// load returns the newest valid progress. ok is false when there is none
// or it belongs to another log generation (then everything is replayed).
// It also positions the next store on the other slot, so the newest valid
// record is never the one overwritten.
func (p *progressFile) load(want logID) (off int64, seq uint64, ok bool) {
	var buf [2 * progressSlot]byte
	n, _ := p.f.ReadAt(buf[:], 0)
	var bestID logID
	found := false
	for slot := 0; slot < 2; slot++ {
		lo := slot * progressSlot
		if n < lo+progressBytes {
			continue
		}
		sq, o, id, valid := decodeProgress(buf[lo : lo+progressBytes])
		if valid && (!found || sq > seq) {
			seq, off, bestID, found = sq, o, id, true
		}
	}
	p.seq = seq
	return off, seq, found && bestID == want
}

// store writes progress without fsync: it survives a process crash, and
// losing it to a power cut only causes re-sends.
func (p *progressFile) store(off int64, id logID) error {
	p.seq++
	_, err := p.f.WriteAt(encodeProgress(p.seq, off, id), int64(p.seq%2)*progressSlot)
	return err
}

func (p *progressFile) sync() error { return p.f.Sync() }
