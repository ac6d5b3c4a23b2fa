package sidecar

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Record is one object as the file sink writes it:
//
//	u8 len(track) | track | u64 group | u64 subgroup | u64 object | u32 len(payload) | payload
//
// all big-endian. It is the decrypting sidecar's file output, and how tests
// compare what arrived with what was sent.
type Record struct {
	Track                     string
	Group, Subgroup, ObjectID uint64
	Payload                   []byte
}

// maxRecordPayload bounds what ReadRecord accepts from a file.
const maxRecordPayload = 64 << 20

// ErrRecord means a record file is corrupt.
var ErrRecord = errors.New("sidecar: corrupt record")

// AppendRecord appends r's encoding to dst.
func AppendRecord(dst []byte, r Record) []byte {
	dst = append(dst, byte(len(r.Track)))
	dst = append(dst, r.Track...)
	dst = binary.BigEndian.AppendUint64(dst, r.Group)
	dst = binary.BigEndian.AppendUint64(dst, r.Subgroup)
	dst = binary.BigEndian.AppendUint64(dst, r.ObjectID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Payload)))
	return append(dst, r.Payload...)
}

// ReadRecord reads one record; it returns io.EOF at a clean end.
func ReadRecord(rd *bufio.Reader) (Record, error) {
	r, size, err := readRecordHeader(rd)
	if err != nil {
		return Record{}, err
	}
	r.Payload = make([]byte, size)
	if _, err := io.ReadFull(rd, r.Payload); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	return r, nil
}

// readRecordHeader reads a record up to its payload and returns the
// payload's size.
func readRecordHeader(rd *bufio.Reader) (Record, uint32, error) {
	n, err := rd.ReadByte()
	if err != nil {
		return Record{}, 0, err
	}
	head := make([]byte, int(n)+28)
	if _, err := io.ReadFull(rd, head); err != nil {
		return Record{}, 0, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	r := Record{Track: string(head[:n])}
	h := head[n:]
	r.Group, r.Subgroup, r.ObjectID = binary.BigEndian.Uint64(h), binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint64(h[16:])
	size := binary.BigEndian.Uint32(h[24:])
	if size > maxRecordPayload {
		return Record{}, 0, fmt.Errorf("%w: payload of %d bytes", ErrRecord, size)
	}
	return r, size, nil
}

// ExtractStats says what Extract wrote.
type ExtractStats struct {
	Objects    int // written, once each
	Duplicates int // same (group, object) again: skipped
	Bytes      int64
}

// Extract writes the payloads of one track of a record file to w in MoQ
// order (by group, then object ID), each (group, object) once, whatever
// order they arrived in: for an H.264 track the result is an Annex-B
// stream (ffmpeg -f h264 -i FILE). size is the file's length.
func Extract(f io.ReaderAt, size int64, track string, w io.Writer) (ExtractStats, error) {
	type entry struct {
		group, object uint64
		off           int64
		size          uint32
	}
	var (
		idx []entry
		st  ExtractStats
	)
	rd := bufio.NewReader(io.NewSectionReader(f, 0, size))
	var off int64
	for {
		r, n, err := readRecordHeader(rd)
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("record at byte %d: %w", off, err)
		}
		off += int64(1 + len(r.Track) + 28)
		if r.Track == track {
			idx = append(idx, entry{r.Group, r.ObjectID, off, n})
		}
		if _, err := rd.Discard(int(n)); err != nil {
			return st, fmt.Errorf("%w: record at byte %d: %v", ErrRecord, off, err)
		}
		off += int64(n)
	}
	slices.SortStableFunc(idx, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.object, b.object))
	})
	var buf []byte
	for i, e := range idx {
		if i > 0 && e.group == idx[i-1].group && e.object == idx[i-1].object {
			st.Duplicates++
			continue
		}
		buf = slices.Grow(buf[:0], int(e.size))[:e.size]
		if _, err := f.ReadAt(buf, e.off); err != nil {
			return st, fmt.Errorf("%w: %v", ErrRecord, err)
		}
		if _, err := w.Write(buf); err != nil {
			return st, err
		}
		st.Objects++
		st.Bytes += int64(e.size)
	}
	return st, nil
}

// FileSink writes records to a file (or any writer), one per object.
type FileSink struct {
	mu  sync.Mutex
	w   *bufio.Writer
	buf []byte
}

// NewFileSink writes records to w. Call Flush before closing w.
func NewFileSink(w io.Writer) *FileSink { return &FileSink{w: bufio.NewWriter(w)} }

// WriteObject appends one record.
func (f *FileSink) WriteObject(track string, group, subgroup, object uint64, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf = AppendRecord(f.buf[:0], Record{Track: track, Group: group, Subgroup: subgroup, ObjectID: object, Payload: payload})
	_, err := f.w.Write(f.buf)
	return err
}

// Flush writes buffered records.
func (f *FileSink) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w.Flush()
}
