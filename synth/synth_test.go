//go:debug cryptocustomrand=1

package synth

import (
	"testing"
)

func TestSmoke(t *testing.T) {
	dir := "/tmp/synthout"
	stats, err := Generate(dir, Options{Seed: 1, Scale: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		t.Logf("%+v", s)
	}
}
