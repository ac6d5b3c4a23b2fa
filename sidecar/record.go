package sidecar

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	n, err := rd.ReadByte()
	if err != nil {
		return Record{}, err
	}
	head := make([]byte, int(n)+28)
	if _, err := io.ReadFull(rd, head); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	r := Record{Track: string(head[:n])}
	h := head[n:]
	r.Group, r.Subgroup, r.ObjectID = binary.BigEndian.Uint64(h), binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint64(h[16:])
	size := binary.BigEndian.Uint32(h[24:])
	if size > maxRecordPayload {
		return Record{}, fmt.Errorf("%w: payload of %d bytes", ErrRecord, size)
	}
	r.Payload = make([]byte, size)
	if _, err := io.ReadFull(rd, r.Payload); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	return r, nil
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
