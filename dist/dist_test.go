package dist

import (
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
)

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    *Env
		wantErr string
	}{
		{"single process", map[string]string{}, nil, ""},
		{"torchrun", map[string]string{"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
			"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RESTART_COUNT": "2"},
			&Env{Rank: 1, WorldSize: 4, LocalRank: 1, LocalWorldSize: 2, MasterAddr: "10.0.0.1", MasterPort: 29500, AgentStore: true, RestartCount: 2}, ""},
		{"by hand", map[string]string{"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "node1", "MASTER_PORT": "1234"},
			&Env{Rank: 0, WorldSize: 2, LocalWorldSize: 1, MasterAddr: "node1", MasterPort: 1234}, ""},
		{"no world size", map[string]string{"RANK": "0", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, nil, "WORLD_SIZE is not set"},
		{"rank too large", map[string]string{"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, nil, "RANK=2: want less than WORLD_SIZE=2"},
		{"bad port", map[string]string{"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "http"}, nil, `MASTER_PORT="http"`},
		{"no master", map[string]string{"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "1"}, nil, "MASTER_ADDR is not set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestSamplerIsPyTorchs: every rank's index list is
// torch.utils.data.DistributedSampler's, shuffled or not, padded or cut,
// for several epochs.
func TestSamplerIsPyTorchs(t *testing.T) {
	python := testenv.Python(t)
	var cases []Sampler
	var epochs []int
	var in strings.Builder
	for _, n := range []int{0, 1, 7, 10, 100, 1001} {
		for _, world := range []int{1, 2, 3, 4} {
			for _, shuffle := range []bool{false, true} {
				for _, dropLast := range []bool{false, true} {
					for rank := range world {
						for _, epoch := range []int{0, 3} {
							s := Sampler{N: n, Rank: rank, WorldSize: world, Shuffle: shuffle, Seed: 9876, DropLast: dropLast}
							cases, epochs = append(cases, s), append(epochs, epoch)
							fmt.Fprintf(&in, "%d %d %d %d %d %d %d\n", n, world, rank, s.Seed, epoch, b2i(shuffle), b2i(dropLast))
						}
					}
				}
			}
		}
	}
	cmd := exec.Command(python, "testdata/sampler.py")
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sampler.py: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("sampler.py gave %d lines for %d cases", len(lines), len(cases))
	}
	for i, s := range cases {
		var want []int64
		for _, f := range strings.Fields(lines[i]) {
			v, _ := strconv.ParseInt(f, 10, 64)
			want = append(want, v)
		}
		got, err := s.Indices(epochs[i])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("%+v epoch %d: %v, PyTorch %v", s, epochs[i], got, want)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
