package train_test

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/deeppacket/deeppacket/data/dataset"
	"github.com/deeppacket/deeppacket/train"
)

// Train a small CNN for two epochs from a config, as `deeppacket train
// --config` does, on a set of 64 packets of 4 classes.
func ExampleTrain() {
	dir, err := os.MkdirTemp("", "example-train-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rng := rand.New(rand.NewPCG(1, 2))
	var samples []dataset.Sample
	for i := range 64 {
		feature := make([]byte, 100)
		for j := range feature {
			feature[j] = byte(rng.IntN(256))
		}
		samples = append(samples, dataset.Sample{Feature: feature, Label: int64(i % 4), Source: "example", Index: int64(i), Flow: int64(i)})
	}
	set := filepath.Join(dir, "train.parquet")
	if err := dataset.WriteSet(set, dataset.Compact, 1500, dataset.SetWriterOptions{}, samples); err != nil {
		log.Fatal(err)
	}

	cfg := train.DefaultConfig() // configs/*.yaml hold the same keys
	cfg.Data.Train = set
	cfg.Task = "application"
	cfg.Model.C1OutputDim, cfg.Model.C2OutputDim, cfg.Model.OutputDim = 8, 8, 4
	cfg.Epochs, cfg.BatchSize = 2, 16
	res, err := train.Train(context.Background(), cfg, train.Options{RunDir: filepath.Join(dir, "run")})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range res.Epochs {
		fmt.Printf("epoch %d: %d samples, %d steps so far\n", e.Epoch, e.Samples, e.GlobalStep)
	}
	fmt.Println("last checkpoint:", filepath.Base(res.Last))
	// Output:
	// epoch 0: 64 samples, 4 steps so far
	// epoch 1: 64 samples, 8 steps so far
	// last checkpoint: last.ckpt
}
