package train

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/data/split"
	"github.com/deeppacket/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/internal/testenv"
)

// The tests share one preprocessing and flow split of the ISCX captures in
// ../shared/pcaps/iscx, made once per test binary in a temporary folder.
var (
	iscxOnce sync.Once
	iscxDir  string
	iscxErr  error
)

// iscxSplit returns the folder holding application_classification/ and
// traffic_classification/, each with train.parquet and test.parquet.
func iscxSplit(t *testing.T) string {
	t.Helper()
	captures := testenv.Shared(t, "pcaps/iscx")
	iscxOnce.Do(func() {
		if iscxDir, iscxErr = os.MkdirTemp("", "train-iscx-"); iscxErr != nil {
			return
		}
		iscxErr = prepareISCX(captures, iscxDir)
	})
	if iscxErr != nil {
		t.Fatal(iscxErr)
	}
	return filepath.Join(iscxDir, "split")
}

func prepareISCX(captures, dir string) error {
	lmap, err := labels.Load(filepath.Join(captures, "labels.tsv"))
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(captures)
	if err != nil {
		return err
	}
	pre := filepath.Join(dir, "preprocessed")
	ctx := context.Background()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pcap") {
			continue
		}
		path := filepath.Join(captures, e.Name())
		lab := lmap.Lookup(path)
		if lab.None() {
			continue
		}
		out := filepath.Join(pre, strings.TrimSuffix(e.Name(), ".pcap")+".parquet")
		if _, err := features.Preprocess(ctx, path, out, features.Options{Layout: features.LayoutReference}, lab, nil); err != nil {
			return err
		}
	}
	opts := split.DefaultOptions()
	opts.SplitBy = split.ByFlow
	_, err = split.Run(ctx, pre, filepath.Join(dir, "split"), opts)
	return err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if iscxDir != "" {
		os.RemoveAll(iscxDir)
	}
	os.Exit(code)
}
