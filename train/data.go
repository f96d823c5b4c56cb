package train

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/deeppacket/deeppacket/data/dataset"
)

// holdOut splits the training set into the rows trained on and the
// validation rows, in dir/train.parquet and dir/val.parquet. A row goes to
// validation when a seeded hash of its position falls below the fraction:
// the same set and seed always hold out the same rows, so a resumed run
// validates on the rows the interrupted one did.
func holdOut(cfg Config, dir string) (trainPath, valPath string, err error) {
	paths, err := dataset.SetFiles(cfg.Data.Train)
	if err != nil {
		return "", "", err
	}
	if len(paths) == 0 {
		return "", "", fmt.Errorf("read %s: no .parquet files", cfg.Data.Train)
	}
	trainPath, valPath = filepath.Join(dir, "train.parquet"), filepath.Join(dir, "val.parquet")
	signal := int(cfg.Model.SignalLength)
	sets := make([]*dataset.SetWriter, 2)
	for i, p := range []string{trainPath, valPath} {
		if sets[i], err = dataset.CreateSet(p, dataset.Compact, signal, dataset.SetWriterOptions{}); err != nil {
			return "", "", err
		}
		defer sets[i].Abort()
	}
	parts := []*dataset.PartWriter{sets[0].Part(0), sets[1].Part(0)}
	lim := dataset.Limits{SignalLength: signal, NumClasses: int(cfg.Model.OutputDim)}
	threshold := uint64(cfg.ValidationFrac * (1 << 53))
	var (
		rd   dataset.RowGroupReader
		rows dataset.Rows
		row  uint64
		buf  [2][]dataset.Sample
		nval int
	)
	for _, p := range paths {
		f, err := dataset.OpenSetFile(p)
		if err != nil {
			return "", "", err
		}
		for rg := range f.NumRowGroups() {
			rows.Reset()
			if err := rd.Read(f, rg, lim, &rows); err != nil {
				f.Close()
				return "", "", err
			}
			buf[0], buf[1] = buf[0][:0], buf[1][:0]
			for i := range rows.Len() {
				side := 0
				if splitmix64(cfg.Seed^splitmix64(row))>>11 < threshold {
					side = 1
					nval++
				}
				row++
				buf[side] = append(buf[side], dataset.Sample{Feature: rows.Feature(i), Label: rows.Labels[i]})
			}
			for side := range 2 {
				if err := parts[side].Write(buf[side]); err != nil {
					f.Close()
					return "", "", err
				}
			}
		}
		f.Close()
	}
	if nval == 0 || int(row) == nval {
		return "", "", fmt.Errorf("validation_fraction %g of %d rows leaves an empty training or validation set", cfg.ValidationFrac, row)
	}
	for i := range 2 {
		if err := parts[i].Close(); err != nil {
			return "", "", err
		}
		if err := sets[i].Commit(); err != nil {
			return "", "", err
		}
	}
	return trainPath, valPath, nil
}

// flowRow is the part of a compact set row that says which flow it is.
type flowRow struct {
	Source string `parquet:"source"`
	Flow   int64  `parquet:"flow"`
}

// readFlows returns each row's flow ("capture/flow id") in the order the
// loader reads the set without shuffling, or nil when the set has no flow
// column (the reference's format).
func readFlows(path string) ([]string, error) {
	paths, err := dataset.SetFiles(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range paths {
		keys, err := readFileFlows(p)
		if err != nil || keys == nil {
			return nil, err
		}
		out = append(out, keys...)
	}
	return out, nil
}

func readFileFlows(path string) ([]string, error) {
	f, pf, err := dataset.OpenParquet(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, col := range []string{"source", "flow"} {
		if _, ok := pf.Schema().Lookup(col); !ok {
			return nil, nil
		}
	}
	var out []string
	for _, rg := range pf.RowGroups() {
		r := parquet.NewGenericRowGroupReader[flowRow](rg)
		batch := make([]flowRow, 1024)
		for {
			n, err := r.Read(batch)
			for _, fr := range batch[:n] {
				out = append(out, fr.Source+"/"+strconv.FormatInt(fr.Flow, 10))
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("read %s flows: %w", path, err)
			}
		}
		r.Close()
	}
	return out, nil
}
