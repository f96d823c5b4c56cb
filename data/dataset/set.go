package dataset

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/snappy"

	"github.com/deeppacket/deeppacket/internal/atomicfile"
)

// Format is the layout of a train or test set file.
type Format int

const (
	// Compact stores the feature bytes as captured (unpadded, unscaled), the
	// label and the provenance columns of the preprocessed packet.
	Compact Format = iota
	// Reference is the schema the reference's Spark job writes: feature a
	// list of doubles already divided by 255 and zero-padded to the signal
	// length, label a 64-bit integer. The reference's PyTorch code reads it
	// unchanged.
	Reference
)

func (f Format) String() string {
	switch f {
	case Compact:
		return "compact"
	case Reference:
		return "reference"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat reads a format name as String writes it.
func ParseFormat(name string) (Format, error) {
	switch name {
	case "compact":
		return Compact, nil
	case "reference":
		return Reference, nil
	}
	return 0, fmt.Errorf("format %q: want compact or reference", name)
}

// Sample is one row of a set in the compact format.
type Sample struct {
	Feature     []byte `parquet:"feature"`
	Label       int64  `parquet:"label"`
	Source      string `parquet:"source,dict"`
	Index       int64  `parquet:"index"`
	TimestampNS int64  `parquet:"timestamp_ns"`
	Flow        int64  `parquet:"flow"`
}

// ReferenceRow is a row of the reference format: what Spark writes for a
// DataFrame of feature array<double> and label bigint, the list in the
// standard three-level layout and the doubles dictionary-encoded (a feature
// has at most 256 distinct values), with two differences in annotations that
// no reader's values depend on:
//   - the list's elements are required, where Spark marks them nullable:
//     parquet-go writes the zero value of a nullable non-pointer field as
//     null, so the padding zeros would read back as None in pyarrow, and the
//     pointer elements that avoid it write eight times slower. pyarrow reads
//     list<element: double not null>, the same float64 values;
//   - parquet-go marks the int64 label as a signed 64-bit integer, which Spark
//     leaves implicit.
//
// The struct keeps parquet-go's fast path from Go slices to columns, ten
// times faster than building the rows value by value.
type ReferenceRow struct {
	Feature []float64 `parquet:"feature,optional,list" parquet-element:",dict"`
	Label   *int64    `parquet:"label,optional"`
}

// referenceSchema is ReferenceRow's, under the name Spark gives its schemas.
var referenceSchema = parquet.NewSchema("spark_schema", parquet.SchemaOf(ReferenceRow{}))

// fastSnappyCodec compresses the packet files and the compact sets. The
// split is bound by how fast it reads and writes them, and Snappy decodes in
// about half the time zstd's fastest level takes and encodes in a third,
// for files only about 5% larger: much of a packet is encrypted and hardly
// compresses. fastSnappy writes standard Snappy blocks, which every Parquet
// reader decodes, with s2's fast matcher rather than the slower "better"
// one the stock codec uses: at about half the CPU time the files are a few
// percent larger.
var fastSnappyCodec compress.Codec = &fastSnappy{}

type fastSnappy struct{ snappy.Codec }

func (*fastSnappy) Encode(dst, src []byte) ([]byte, error) {
	n := s2.MaxEncodedLen(len(src))
	if n < 0 {
		return nil, errors.New("snappy: block too large")
	}
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	return s2.EncodeSnappy(dst[:n], src), nil
}

// skipFeatureBounds leaves out the minimum and maximum of the feature
// column from the page headers and the footer: byte strings of packets have
// no useful order, and comparing them costs a tenth of writing them.
var skipFeatureBounds skipFeatureBoundsOption

type skipFeatureBoundsOption struct{}

func (skipFeatureBoundsOption) ConfigureWriter(c *parquet.WriterConfig) {
	c.SkipPageBounds = append(c.SkipPageBounds, []string{"feature"})
	c.SkipPageStatistics = append(c.SkipPageStatistics, []string{"feature"})
}

// SetWriterOptions tune a SetWriter; the zero value picks the defaults.
type SetWriterOptions struct {
	// RowsPerPart starts a new part file after this many rows (default 1<<20).
	RowsPerPart int
	// RowsPerRowGroup bounds the rows a part buffers in memory before it
	// writes them out (default: about 16 MB of uncompressed features).
	RowsPerRowGroup int
}

// SetWriter writes one set (train or test) as a folder of part files, the
// layout Spark gives a DataFrame saved as "train.parquet". Everything is
// written into a temporary folder beside the target that Commit renames into
// place, so an interrupted run never leaves a partial set, and an older set
// at the same path is replaced only once the new one is complete.
type SetWriter struct {
	dir, tmp     string
	format       Format
	signalLength int
	opts         SetWriterOptions
	// Finished part files are committed (flushed to disk, renamed) in the
	// background while the next ones are written; Commit and Abort wait.
	committing sync.WaitGroup
	mu         sync.Mutex
	commitErr  error
}

// CreateSet starts the set at dir (a folder named like "train.parquet").
// signalLength is the length the reference format pads every feature to.
func CreateSet(dir string, format Format, signalLength int, opts SetWriterOptions) (*SetWriter, error) {
	if signalLength <= 0 {
		return nil, fmt.Errorf("create %s: signal length %d must be positive", dir, signalLength)
	}
	if opts.RowsPerPart <= 0 {
		opts.RowsPerPart = 1 << 20
	}
	if opts.RowsPerRowGroup <= 0 {
		rowBytes := signalLength
		if format == Reference {
			rowBytes *= 8
		}
		opts.RowsPerRowGroup = max(64, (16<<20)/rowBytes)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := atomicfile.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	return &SetWriter{dir: dir, tmp: tmp, format: format, signalLength: signalLength, opts: opts}, nil
}

// Path is the folder the set has once committed.
func (w *SetWriter) Path() string { return w.dir }

// Part starts the part files numbered id: part-<id>-<n>.parquet, a new n
// every RowsPerPart rows, so that parts written concurrently under distinct
// ids list in a fixed order. A part with no rows leaves no file.
func (w *SetWriter) Part(id int) *PartWriter { return &PartWriter{set: w, id: id} }

// PartWriter writes the rows of one part; use each from one goroutine.
type PartWriter struct {
	set     *SetWriter
	id, seq int
	file    *atomicfile.File
	compact *parquet.GenericWriter[Sample]
	ref     *parquet.GenericWriter[ReferenceRow]
	inFile  int
	rows    []ReferenceRow // reused buffers of reference rows
	labels  []int64
}

// Write appends samples. Their features must not be longer than the signal
// length; Write copies what it keeps, so the caller may reuse the slices.
func (p *PartWriter) Write(samples []Sample) error {
	for len(samples) > 0 {
		if p.file == nil {
			if err := p.open(); err != nil {
				return err
			}
		}
		n := min(len(samples), p.set.opts.RowsPerPart-p.inFile)
		if err := p.write(samples[:n]); err != nil {
			return fmt.Errorf("write %s: %w", p.file.Path(), err)
		}
		p.inFile += n
		samples = samples[n:]
		if p.inFile == p.set.opts.RowsPerPart {
			if err := p.Close(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *PartWriter) open() error {
	path := filepath.Join(p.set.tmp, fmt.Sprintf("part-%05d-%03d.parquet", p.id, p.seq))
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	p.seq++
	p.file, p.inFile = f, 0
	rowGroup := parquet.MaxRowsPerRowGroup(int64(p.set.opts.RowsPerRowGroup))
	switch p.set.format {
	case Compact:
		p.compact = parquet.NewGenericWriter[Sample](f, parquet.Compression(fastSnappyCodec), rowGroup, skipFeatureBounds)
	case Reference:
		p.ref = parquet.NewGenericWriter[ReferenceRow](f, referenceSchema, parquet.Compression(&parquet.Snappy), rowGroup)
	}
	return nil
}

func (p *PartWriter) write(samples []Sample) error {
	for i := range samples {
		if n := len(samples[i].Feature); n > p.set.signalLength {
			return fmt.Errorf("feature of %d bytes is longer than the signal length %d", n, p.set.signalLength)
		}
	}
	if p.compact != nil {
		_, err := p.compact.Write(samples)
		return err
	}
	for len(samples) > 0 {
		n := min(len(samples), referenceRowsPerWrite)
		p.rows, p.labels = slices.Grow(p.rows[:0], n)[:n], slices.Grow(p.labels[:0], n)[:n]
		for i := range n {
			p.rows[i].Feature = referenceFeature(p.rows[i].Feature, samples[i].Feature, p.set.signalLength)
			p.labels[i] = samples[i].Label
			p.rows[i].Label = &p.labels[i]
		}
		if _, err := p.ref.Write(p.rows); err != nil {
			return err
		}
		samples = samples[n:]
	}
	return nil
}

// referenceRowsPerWrite bounds the rows built before handing them to the
// Parquet writer (each holds signalLength float64s).
const referenceRowsPerWrite = 64

// referenceFeature fills dst with feature scaled to [0, 1] and zero-padded
// to the signal length, as the reference's preprocessing does.
func referenceFeature(dst []float64, feature []byte, signalLength int) []float64 {
	dst = slices.Grow(dst[:0], signalLength)[:signalLength]
	for i, b := range feature {
		dst[i] = ByteScale[b]
	}
	clear(dst[len(feature):])
	return dst
}

// Close finishes the current part file, if any. Write may go on after it,
// into a new file.
func (p *PartWriter) Close() error {
	if p.file == nil {
		return nil
	}
	var err error
	if p.compact != nil {
		err = p.compact.Close()
	} else {
		err = p.ref.Close()
	}
	f := p.file
	p.file, p.compact, p.ref = nil, nil, nil
	if err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", f.Path(), err)
	}
	p.set.committing.Go(func() {
		if err := f.Commit(); err != nil {
			p.set.mu.Lock()
			p.set.commitErr = cmp.Or(p.set.commitErr, err)
			p.set.mu.Unlock()
		}
	})
	return nil
}

// WriteSet writes samples as a complete set at dir, in one part: for small
// sets (split writes large ones part by part, in parallel).
func WriteSet(dir string, format Format, signalLength int, opts SetWriterOptions, samples []Sample) error {
	w, err := CreateSet(dir, format, signalLength, opts)
	if err != nil {
		return err
	}
	p := w.Part(0)
	err = p.Write(samples)
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.Abort()
		return err
	}
	return w.Commit()
}

// Commit moves the set into place; every part must be closed. A set with no
// rows is an empty folder, as Spark leaves it.
func (w *SetWriter) Commit() error {
	w.committing.Wait()
	if w.commitErr != nil {
		w.Abort()
		return w.commitErr
	}
	// Rename the old set aside rather than deleting it first, so that a
	// failure here still leaves one complete set at the path.
	old := ""
	if _, err := os.Stat(w.dir); err == nil {
		old = w.tmp + ".old"
		if err := os.Rename(w.dir, old); err != nil {
			w.Abort()
			return fmt.Errorf("replace %s: %w", w.dir, err)
		}
	}
	if err := os.Rename(w.tmp, w.dir); err != nil {
		if old != "" {
			os.Rename(old, w.dir)
		}
		w.Abort()
		return fmt.Errorf("write %s: %w", w.dir, err)
	}
	w.tmp = ""
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("remove the previous %s: %w", w.dir, err)
		}
	}
	return nil
}

// Abort discards everything written; after Commit it does nothing. Parts
// still open are left to their writers' goroutines to Close first.
func (w *SetWriter) Abort() {
	w.committing.Wait()
	if w.tmp != "" {
		os.RemoveAll(w.tmp)
		w.tmp = ""
	}
}

// ByteScale maps a byte to its feature value as the reference computes it in
// Python (a float64 division by 255).
var ByteScale = func() (t [256]float64) {
	for b := range t {
		t[b] = float64(b) / 255
	}
	return t
}()

// SetFiles lists the Parquet files of a set: path itself when it is a file,
// else the .parquet files in the folder in name order, leaving out the
// hidden and underscore names Spark and our writers use for bookkeeping.
func SetFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || !strings.HasSuffix(name, ".parquet") {
			continue
		}
		files = append(files, filepath.Join(path, name))
	}
	slices.Sort(files)
	return files, nil
}

// ReadAllSamples reads every row of a compact set (a file or a folder of
// them, as SetFiles), in file order (for tests and small sets; training
// streams them through package loader).
func ReadAllSamples(path string) ([]Sample, error) {
	files, err := SetFiles(path)
	if err != nil {
		return nil, err
	}
	var all []Sample
	for _, f := range files {
		rows, err := parquet.ReadFile[Sample](f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		all = append(all, rows...)
	}
	return all, nil
}

// SetFile is one Parquet file of a set, opened for reading its features and
// labels in either format.
type SetFile struct {
	Path   string
	Format Format
	file   *os.File
	pq     *parquet.File
	// feature and label are the leaf column indexes, labelDef the label's
	// maximum definition level.
	feature, label, labelDef int
	// nullFeature is the definition level of a null feature list (-1 when
	// the column is required); nullElement that of a null list element.
	nullFeature, nullElement int
	maxDefinition            int // of a present feature element
}

// OpenSetFile opens path and recognises its format from the schema.
func OpenSetFile(path string) (*SetFile, error) {
	f, pq, err := OpenParquet(path, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, err
	}
	s := &SetFile{Path: path, file: f, pq: pq}
	if err := s.detect(); err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return s, nil
}

// detect finds the feature and label columns: feature as a byte array is the
// compact format, as a list of doubles (any list layout Spark has written)
// the reference one.
func (s *SetFile) detect() error {
	schema := s.pq.Schema()
	var feature, label *parquet.LeafColumn
	for _, path := range schema.Columns() {
		leaf, _ := schema.Lookup(path...)
		switch path[0] {
		case "feature":
			feature = &leaf
		case "label":
			if len(path) == 1 {
				label = &leaf
			}
		}
	}
	if feature == nil {
		return errors.New(`no "feature" column`)
	}
	if label == nil {
		if _, ok := schema.Lookup("app_label"); ok {
			return errors.New(`no "label" column: this is a preprocessed capture (app_label, traffic_label), not a train or test set; run split on the preprocess folder and give one of its sets (SETS/application_classification/test.parquet)`)
		}
		return errors.New(`no "label" column`)
	}
	switch kind := feature.Node.Type().Kind(); {
	case kind == parquet.ByteArray && feature.MaxRepetitionLevel == 0:
		s.Format = Compact
	case kind == parquet.Double && feature.MaxRepetitionLevel == 1:
		s.Format = Reference
	default:
		return fmt.Errorf(`column "feature" is %v (repetition depth %d): want a byte array or a list of doubles`,
			feature.Node.Type(), feature.MaxRepetitionLevel)
	}
	if kind := label.Node.Type().Kind(); kind != parquet.Int64 && kind != parquet.Int32 {
		return fmt.Errorf(`column "label" is %v: want an integer`, label.Node.Type())
	}
	s.feature, s.label, s.labelDef = feature.ColumnIndex, label.ColumnIndex, label.MaxDefinitionLevel
	s.nullFeature, s.nullElement = -1, -1
	if field, ok := fieldByName(schema, "feature"); ok && field.Optional() {
		s.nullFeature = 0
	}
	if feature.Node.Optional() {
		s.nullElement = feature.MaxDefinitionLevel - 1
	}
	s.maxDefinition = feature.MaxDefinitionLevel
	return nil
}

func fieldByName(n parquet.Node, name string) (parquet.Field, bool) {
	for _, f := range n.Fields() {
		if f.Name() == name {
			return f, true
		}
	}
	return nil, false
}

// NumRowGroups is the number of row groups in the file.
func (s *SetFile) NumRowGroups() int { return len(s.pq.RowGroups()) }

// RowGroupRows is the number of rows of row group i.
func (s *SetFile) RowGroupRows(i int) int64 { return s.pq.RowGroups()[i].NumRows() }

// Close closes the file.
func (s *SetFile) Close() error { return s.file.Close() }

// Rows holds decoded rows: the features as bytes (the reference format's
// doubles turned back into the bytes they were made from, trailing zero
// padding dropped) and the labels.
type Rows struct {
	Data    []byte
	Offsets []int // row i is Data[Offsets[i]:Offsets[i+1]]; len(Offsets) == Len()+1
	Labels  []int64
}

// Len is the number of rows.
func (r *Rows) Len() int { return len(r.Labels) }

// Feature returns the bytes of row i.
func (r *Rows) Feature(i int) []byte { return r.Data[r.Offsets[i]:r.Offsets[i+1]] }

// Reset empties r, keeping its memory.
func (r *Rows) Reset() {
	r.Data, r.Offsets, r.Labels = r.Data[:0], append(r.Offsets[:0], 0), r.Labels[:0]
}

// Limits are what a reader checks each row against.
type Limits struct {
	SignalLength int // a longer feature is an error
	NumClasses   int // a label outside [0, NumClasses) is an error; 0 checks nothing
}

// RowGroupReader decodes row groups (with Column); it keeps its buffers
// between calls, so reuse one per goroutine.
type RowGroupReader struct {
	dict []byte // the bytes of the current dictionary page's doubles
}

// Read appends the rows of row group rg of s to dst, checking them against
// lim. Errors name the file and the row (counted from 0 in the file).
func (r *RowGroupReader) Read(s *SetFile, rg int, lim Limits, dst *Rows) error {
	if len(dst.Offsets) == 0 {
		dst.Offsets = append(dst.Offsets, 0)
	}
	first := int64(0)
	groups := s.pq.RowGroups()
	for _, g := range groups[:rg] {
		first += g.NumRows()
	}
	n := int(groups[rg].NumRows())
	chunks := groups[rg].ColumnChunks()
	start := dst.Len()
	if err := readLabels(chunks[s.label], s.labelDef, first, n, lim, dst); err != nil {
		return fmt.Errorf("read %s: %w", s.Path, err)
	}
	var err error
	if s.Format == Compact {
		err = readBytes(chunks[s.feature], s.maxDefinition, first, n, lim, dst)
	} else {
		err = r.readDoubles(chunks[s.feature], first, lim, s, dst)
	}
	if err == nil && len(dst.Offsets)-1 != dst.Len() {
		err = fmt.Errorf("row group %d has %d labels but %d features", rg, dst.Len()-start, len(dst.Offsets)-1-start)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", s.Path, err)
	}
	return nil
}

func readLabels(chunk parquet.ColumnChunk, maxDef int, first int64, n int, lim Limits, dst *Rows) error {
	col := NewColumn(chunk, maxDef)
	defer col.Close()
	start := len(dst.Labels)
	var err error
	dst.Labels, err = col.Int64s(dst.Labels, n)
	if err == ErrNull {
		return fmt.Errorf("row %d: label is null", first+int64(len(dst.Labels)-start))
	}
	if err != nil {
		return err
	}
	for i, label := range dst.Labels[start:] {
		if lim.NumClasses > 0 && (label < 0 || label >= int64(lim.NumClasses)) {
			return fmt.Errorf("row %d: label %d is outside the model's %d classes", first+int64(i), label, lim.NumClasses)
		}
	}
	return nil
}

func readBytes(chunk parquet.ColumnChunk, maxDef int, first int64, n int, lim Limits, dst *Rows) error {
	col := NewColumn(chunk, maxDef)
	defer col.Close()
	base := len(dst.Offsets) - 1
	var err error
	dst.Data, dst.Offsets, err = col.ByteArrays(dst.Data, dst.Offsets, n)
	if err == ErrNull {
		return fmt.Errorf("row %d: feature is null", first+int64(len(dst.Offsets)-1-base))
	}
	if err != nil {
		return err
	}
	for i := base; i < len(dst.Offsets)-1; i++ {
		if l := dst.Offsets[i+1] - dst.Offsets[i]; l > lim.SignalLength {
			return fmt.Errorf("row %d: feature of %d bytes is longer than the signal length %d", first+int64(i-base), l, lim.SignalLength)
		}
	}
	return nil
}

// readDoubles turns each list of doubles back into bytes. A value that is not
// a byte divided by 255 is an error: both the reference and we only ever
// write such values, and the loader keeps rows as bytes to bound memory.
// It works on whole pages, not value by value: a row is signalLength values.
func (r *RowGroupReader) readDoubles(chunk parquet.ColumnChunk, first int64, lim Limits, s *SetFile, dst *Rows) error {
	base := len(dst.Offsets) - 1
	row := func() int64 { return first + int64(len(dst.Offsets)-1-base) }
	rowStart, n := -1, 0 // where the current row's bytes begin, its values
	end := func() error {
		if rowStart < 0 {
			return nil
		}
		if n > lim.SignalLength {
			return fmt.Errorf("row %d: feature of %d values is longer than the signal length %d", row(), n, lim.SignalLength)
		}
		// Drop the zero padding; the loader pads again.
		for len(dst.Data) > rowStart && dst.Data[len(dst.Data)-1] == 0 {
			dst.Data = dst.Data[:len(dst.Data)-1]
		}
		dst.Offsets = append(dst.Offsets, len(dst.Data))
		return nil
	}
	col := NewColumn(chunk, s.maxDefinition)
	defer col.Close()
	for {
		err := col.NextPage()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := r.readDoublePage(col, s, &rowStart, &n, end, row, dst); err != nil {
			return err
		}
	}
	return end()
}

func (r *RowGroupReader) readDoublePage(col *Column, s *SetFile, rowStart, n *int, end func() error, row func() int64, dst *Rows) error {
	reps, defs := col.Levels()
	// Spark dictionary-encodes the doubles (there are at most 256 of them):
	// then each dictionary entry is converted once.
	plain, indexes := col.Doubles()
	if indexes != nil {
		if err := r.convertDictionary(plain); err != nil {
			return fmt.Errorf("row %d: %w", row(), err)
		}
	}
	k := 0 // the next non-null value
	for i, rep := range reps {
		if rep == 0 {
			if err := end(); err != nil {
				return err
			}
			*rowStart, *n = len(dst.Data), 0
			if int(defs[i]) == s.nullFeature {
				return fmt.Errorf("row %d: feature is null", row())
			}
		}
		switch int(defs[i]) {
		case s.maxDefinition:
			var b byte
			if indexes != nil {
				b = r.dict[indexes[k]]
			} else {
				var err error
				if b, err = toByte(plain[k]); err != nil {
					return fmt.Errorf("row %d: feature value %d: %w", row(), *n, err)
				}
			}
			dst.Data = append(dst.Data, b)
			k++
			*n++
		case s.nullElement: // a null element counts as 0
			dst.Data = append(dst.Data, 0)
			*n++
		} // anything else is an empty list
	}
	return nil
}

// convertDictionary turns a page's dictionary of doubles into r.dict.
func (r *RowGroupReader) convertDictionary(values []float64) error {
	r.dict = r.dict[:0]
	for _, x := range values {
		b, err := toByte(x)
		if err != nil {
			return fmt.Errorf("dictionary: %w", err)
		}
		r.dict = append(r.dict, b)
	}
	return nil
}

// toByte inverts ByteScale, allowing for a value that went through float32.
func toByte(x float64) (byte, error) {
	b := x*255 + 0.5
	if !(b >= 0 && b < 256) || math.Abs(float64(int(b))-x*255) > 1e-3 {
		return 0, fmt.Errorf("%v is not a byte divided by 255", x)
	}
	return byte(b), nil
}
