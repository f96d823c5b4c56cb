// Package capture reads packet captures: pcap (micro- and nanosecond, both
// byte orders) and pcapng (several sections, interfaces of different link
// types), plain or gzip-compressed, told apart by their magic number rather
// than their extension. It streams: memory stays bounded by the largest
// record, whatever the file's size.
//
// Imports none of our packages.
package capture

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Format is the container format of a capture.
type Format int

const (
	FormatPcap Format = iota + 1
	FormatPcapNG
)

func (f Format) String() string {
	switch f {
	case FormatPcap:
		return "pcap"
	case FormatPcapNG:
		return "pcapng"
	}
	return "unknown"
}

// Record is one packet as read from a capture. Data is owned by the Reader
// and valid only until the next call to Next.
type Record struct {
	Data      []byte
	LinkType  layers.LinkType
	Timestamp time.Time
	// Index is the packet's 0-based position in the capture.
	Index int64
	// Offset is the byte offset of the record in the (decompressed) file.
	Offset int64
}

// DamageError reports a capture that cannot be read past a point: the
// records before Offset were read, nothing after it.
type DamageError struct {
	Offset  int64 // byte offset (in the decompressed stream) of the damaged record
	Packets int64 // records read before the damage
	Err     error
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("damaged at byte offset %d after %d packets: %v", e.Offset, e.Packets, e.Err)
}

func (e *DamageError) Unwrap() error { return e.Err }

// ErrUnknownFormat is returned for a file that is neither pcap nor pcapng.
var ErrUnknownFormat = errors.New("not a pcap or pcapng capture")

const bufSize = 1 << 16

// Reader streams the records of one capture.
type Reader struct {
	format  Format
	pcap    *pcapgo.Reader
	ng      *pcapgo.NgReader
	file    *countingReader // bytes read from the file itself
	counted *countingReader // bytes handed to the buffered reader
	buf     *bufio.Reader   // what pcapgo reads from
	index   int64
	closer  io.Closer
	// Compressed says whether the file was gzip-compressed; offsets then
	// count decompressed bytes.
	Compressed bool
	done       bool
}

// Open opens a capture file. Close the Reader when done.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

// NewReader reads a capture from r, detecting its format and compression
// from the first bytes.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{file: &countingReader{r: r}}
	outer := bufio.NewReaderSize(rd.file, bufSize)
	magic, err := outer.Peek(2)
	if err != nil {
		return nil, fmt.Errorf("%w: file shorter than a header", ErrUnknownFormat)
	}
	var src io.Reader = outer
	if magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(outer)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		// Every member, as gzip -d reads a concatenation of members.
		src = gz
		rd.Compressed = true
	}
	rd.counted = &countingReader{r: src}
	// pcapgo wraps its source in bufio.NewReader, which returns a
	// *bufio.Reader unchanged when it is big enough: so consumed bytes are
	// counted minus what this one buffers, giving exact record offsets.
	rd.buf = bufio.NewReaderSize(rd.counted, bufSize)
	head, err := rd.buf.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%w: file shorter than a header", ErrUnknownFormat)
	}
	switch m := binary.LittleEndian.Uint32(head); m {
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
		rd.format = FormatPcap
		// libpcap reads every 2.x header alike; pcapgo wants 2.4 exactly.
		// The bytes peeked are the buffer's own, so set the minor version
		// before pcapgo reads it.
		if hdr, err := rd.buf.Peek(8); err == nil {
			bo := binary.ByteOrder(binary.LittleEndian)
			if m == 0xd4c3b2a1 || m == 0x4d3cb2a1 {
				bo = binary.BigEndian
			}
			if bo.Uint16(hdr[4:]) == 2 {
				bo.PutUint16(hdr[6:], 4)
			}
		}
		if rd.pcap, err = pcapgo.NewReader(rd.buf); err != nil {
			return nil, fmt.Errorf("pcap header: %w", err)
		}
	case 0x0a0d0d0a:
		rd.format = FormatPcapNG
		opts := pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true}
		if rd.ng, err = pcapgo.NewNgReader(rd.buf, opts); err != nil {
			return nil, fmt.Errorf("pcapng header: %w", err)
		}
	default:
		return nil, fmt.Errorf("%w (magic %08x)", ErrUnknownFormat, m)
	}
	return rd, nil
}

// BytesRead is the number of bytes read from the file so far (compressed
// bytes for a gzip'd capture), for progress over a capture's size.
func (r *Reader) BytesRead() int64 { return r.file.n }

// LinkType is the capture's link type: for pcapng, the first interface's.
func (r *Reader) LinkType() layers.LinkType {
	if r.pcap != nil {
		return r.pcap.LinkType()
	}
	return r.ng.LinkType()
}

// Format says whether the capture is pcap or pcapng.
func (r *Reader) Format() Format { return r.format }

// offset is the number of decompressed bytes pcapgo has consumed.
func (r *Reader) offset() int64 { return r.counted.n - int64(r.buf.Buffered()) }

// Next reads the next record into rec. It returns io.EOF at the clean end
// of the capture and a *DamageError when a record cannot be read.
func (r *Reader) Next(rec *Record) error {
	if r.done {
		return io.EOF
	}
	start := r.offset()
	var (
		data []byte
		err  error
		ci   gopacket.CaptureInfo
	)
	if r.pcap != nil {
		data, ci, err = r.pcap.ZeroCopyReadPacketData()
		rec.LinkType = r.pcap.LinkType()
	} else {
		data, ci, err = r.ng.ZeroCopyReadPacketData()
		if err == nil && len(ci.AncillaryData) > 0 {
			rec.LinkType, _ = ci.AncillaryData[0].(layers.LinkType)
		}
	}
	if err != nil {
		r.done = true
		// pcapgo returns io.EOF only where a record would start.
		if err == io.EOF {
			return io.EOF
		}
		return &DamageError{Offset: start, Packets: r.index, Err: err}
	}
	rec.Data = data
	rec.Timestamp = ci.Timestamp
	rec.Index = r.index
	rec.Offset = start
	r.index++
	return nil
}

// Close closes the underlying file when the Reader was made by Open.
func (r *Reader) Close() error {
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
