package dataset

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// TestReadLabelKinds: a set's labels read the same from INT64 and INT32
// columns, required or optional, plain or dictionary-encoded, across pages;
// a null label is an error naming its row.
func TestReadLabelKinds(t *testing.T) {
	type int32Row struct {
		Feature []byte `parquet:"feature"`
		Label   int32  `parquet:"label"`
	}
	type dictRow struct {
		Feature []byte `parquet:"feature,dict"`
		Label   int64  `parquet:"label,dict"`
	}
	type optionalRow struct {
		Feature []byte `parquet:"feature,optional"`
		Label   *int64 `parquet:"label,optional"`
	}
	const n = 5000 // more than one page at the page size below
	features := func(i int) []byte { return []byte{byte(i), byte(i >> 8), 1} }
	tests := []struct {
		name    string
		write   func(path string) error
		wantErr string
	}{
		{"int32", func(path string) error {
			rows := make([]int32Row, n)
			for i := range rows {
				rows[i] = int32Row{features(i), int32(i % 7)}
			}
			return parquet.WriteFile(path, rows, parquet.PageBufferSize(4096))
		}, ""},
		{"dictionary", func(path string) error {
			rows := make([]dictRow, n)
			for i := range rows {
				rows[i] = dictRow{features(i), int64(i % 7)}
			}
			return parquet.WriteFile(path, rows, parquet.PageBufferSize(4096))
		}, ""},
		{"optional", func(path string) error {
			rows := make([]optionalRow, n)
			for i := range rows {
				l := int64(i % 7)
				rows[i] = optionalRow{features(i), &l}
			}
			return parquet.WriteFile(path, rows, parquet.PageBufferSize(4096))
		}, ""},
		{"null label", func(path string) error {
			rows := make([]optionalRow, n)
			for i := range rows {
				l := int64(i % 7)
				rows[i] = optionalRow{features(i), &l}
			}
			rows[4321].Label = nil
			return parquet.WriteFile(path, rows, parquet.PageBufferSize(4096))
		}, "row 4321: label is null"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "part.parquet")
			if err := tc.write(path); err != nil {
				t.Fatal(err)
			}
			f, err := OpenSetFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var rows Rows
			var rd RowGroupReader
			for rg := range f.NumRowGroups() {
				if err = rd.Read(f, rg, Limits{SignalLength: 8, NumClasses: 7}, &rows); err != nil {
					break
				}
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rows.Len() != n {
				t.Fatalf("%d rows, want %d", rows.Len(), n)
			}
			for i := range n {
				if rows.Labels[i] != int64(i%7) || !slices.Equal(rows.Feature(i), features(i)) {
					t.Fatalf("row %d: label %d feature %v, want %d %v", i, rows.Labels[i], rows.Feature(i), i%7, features(i))
				}
			}
		})
	}
}
