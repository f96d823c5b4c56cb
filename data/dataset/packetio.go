package dataset

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"

	"github.com/deeppacket/deeppacket/internal/atomicfile"
)

// packetRowGroupRows bounds the rows a PacketWriter buffers before writing
// a row group: at most 1500 feature bytes each, about 24 MB, whatever the
// capture's size.
const packetRowGroupRows = 16384

// packetBatch is how many rows PacketWriter hands parquet-go at once.
const packetBatch = 1024

// PacketWriter writes the preprocessed packets of one capture to a Parquet
// file (Snappy, see fastSnappyCodec), under a temporary name until Commit
// renames it into place.
type PacketWriter struct {
	file  *atomicfile.File
	w     *parquet.GenericWriter[Packet]
	batch []Packet
	arena []byte // feature bytes of the rows in batch
}

// CreatePackets starts a packet file at path.
func CreatePackets(path string) (*PacketWriter, error) {
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, err
	}
	return &PacketWriter{
		file:  f,
		w:     parquet.NewGenericWriter[Packet](f, parquet.Compression(fastSnappyCodec), parquet.MaxRowsPerRowGroup(packetRowGroupRows), skipFeatureBounds),
		batch: make([]Packet, 0, packetBatch),
		arena: make([]byte, 0, packetBatch*1500),
	}, nil
}

// SetMetadata stores key=value in the file's footer, where
// ReadPacketMetadata reads it back without the rows.
func (w *PacketWriter) SetMetadata(key, value string) { w.w.SetKeyValueMetadata(key, value) }

// Write adds one row. The row's Feature is copied, so the caller may reuse
// its buffer; AppLabel and TrafficLabel are kept as given.
func (w *PacketWriter) Write(p Packet) error {
	if len(w.batch) == cap(w.batch) || len(w.arena)+len(p.Feature) > cap(w.arena) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	start := len(w.arena)
	w.arena = append(w.arena, p.Feature...)
	p.Feature = w.arena[start:len(w.arena):len(w.arena)]
	w.batch = append(w.batch, p)
	return nil
}

func (w *PacketWriter) flush() error {
	if len(w.batch) == 0 {
		return nil
	}
	if _, err := w.w.Write(w.batch); err != nil {
		return fmt.Errorf("write %s: %w", w.file.Path(), err)
	}
	w.batch = w.batch[:0]
	w.arena = w.arena[:0]
	return nil
}

// Commit writes the footer and renames the file into place.
func (w *PacketWriter) Commit() error {
	if err := w.flush(); err != nil {
		w.file.Abort()
		return err
	}
	if err := w.w.Close(); err != nil {
		w.file.Abort()
		return fmt.Errorf("write %s: %w", w.file.Path(), err)
	}
	return w.file.Commit()
}

// Abort discards the file; after Commit it does nothing.
func (w *PacketWriter) Abort() { w.file.Abort() }

// PacketReader streams the rows of a packet file.
type PacketReader struct {
	f *os.File
	r *parquet.GenericReader[Packet]
}

// OpenPackets opens a packet file.
func OpenPackets(path string) (*PacketReader, error) {
	f, pf, err := OpenParquet(path)
	if err != nil {
		return nil, err
	}
	return &PacketReader{f: f, r: parquet.NewGenericReader[Packet](pf)}, nil
}

// OpenParquet opens the Parquet file at path and returns it with the open
// file, which the caller closes once done with both. Errors name the file,
// and say when it is not Parquet at all.
func OpenParquet(path string, opts ...parquet.FileOption) (*os.File, *parquet.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	pf, err := parquet.OpenFile(f, info.Size(), opts...)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read %s: not a Parquet file: %w", path, err)
	}
	return f, pf, nil
}

// NumRows is the number of rows in the file.
func (r *PacketReader) NumRows() int64 { return r.r.NumRows() }

// Read fills rows and returns how many it read; io.EOF after the last.
func (r *PacketReader) Read(rows []Packet) (int, error) {
	n, err := r.r.Read(rows)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("read %s: %w", r.f.Name(), err)
	}
	return n, err
}

// Close closes the file.
func (r *PacketReader) Close() error {
	r.r.Close()
	return r.f.Close()
}

// ReadAllPackets reads every row of a packet file (for tests and small
// files; large ones should be streamed with OpenPackets).
func ReadAllPackets(path string) ([]Packet, error) {
	r, err := OpenPackets(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rows := make([]Packet, r.NumRows())
	for n := 0; n < len(rows); {
		m, err := r.Read(rows[n:])
		n += m
		if errors.Is(err, io.EOF) && n == len(rows) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// ReadPacketMetadata returns the footer's key-value metadata of a packet
// file, reading only the footer.
func ReadPacketMetadata(path string) (map[string]string, error) {
	f, pf, err := OpenParquet(path, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	md := map[string]string{}
	for _, kv := range pf.Metadata().KeyValueMetadata {
		md[kv.Key] = kv.Value
	}
	return md, nil
}
