package live

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
)

// maxK is the largest k measured: the ISCX captures hold the first 10
// packets of each session.
const maxK = 10

// BenchmarkVerdictAfter measures how --verdict-after's default was chosen:
// on every labelled ISCX capture, with the reference's published traffic
// ResNet, the flow accuracy of predict's flow rule over each flow's first k
// classified packets, against the vote over the whole flow. The default is
// the smallest k within 1 point of the whole-flow accuracy. Run with
// `go test ./live -run '^$' -bench VerdictAfter -benchtime 1x`.
func BenchmarkVerdictAfter(b *testing.B) {
	model := testenv.Shared(b, "fixtures/reference_traffic_resnet.ckpt")
	dir := testenv.Shared(b, "pcaps/iscx")
	lmap, err := labels.Load(filepath.Join(dir, "labels.tsv"))
	if err != nil {
		b.Fatal(err)
	}
	m, err := ckpt.Load(model)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	captures, err := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var correct [maxK + 1]int // by k; [0] is the whole flow
		var agree [maxK + 1]int   // verdicts at k equal to the whole flow's
		flows := 0
		for _, path := range captures {
			lab := lmap.Lookup(path)
			if lab.Traffic == nil {
				continue
			}
			want := int(*lab.Traffic)
			for _, prefixes := range flowPrefixScores(b, m, path) {
				flows++
				whole, _ := prefixes[0].Verdict()
				for k, v := range prefixes {
					c, _ := v.Verdict()
					if c == want {
						correct[k]++
					}
					if c == whole {
						agree[k]++
					}
				}
			}
		}
		whole := 100 * float64(correct[0]) / float64(flows)
		var table strings.Builder
		chosen := 0
		for k := 1; k <= maxK; k++ {
			acc := 100 * float64(correct[k]) / float64(flows)
			same := 100 * float64(agree[k]) / float64(flows)
			b.ReportMetric(acc, fmt.Sprintf("acc%%_k%d", k))
			b.ReportMetric(same, fmt.Sprintf("same%%_k%d", k))
			fmt.Fprintf(&table, "; k=%d %.2f%% (same as whole %.2f%%)", k, acc, same)
			if chosen == 0 && acc >= whole-1 {
				chosen = k
			}
		}
		b.ReportMetric(whole, "acc%_whole")
		b.ReportMetric(float64(chosen), "chosen_k")
		b.Logf("%d flows; whole-flow vote: accuracy %.2f%%%s; smallest k within 1 point of the whole flow's accuracy: %d", flows, whole, table.String(), chosen)
	}
}

// flowPrefixScores classifies a capture as predict does and returns, for
// every flow, the score over its whole flow ([0]) and over its first k
// packets ([k], k = 1..maxK; flows shorter than k vote over all theirs).
func flowPrefixScores(b testing.TB, m model.Model, path string) map[int64]*[maxK + 1]model.FlowScore {
	tr := features.New(m.Preprocessing())
	batch := model.NewBatch(tr.Options().SignalLength)
	var ids []int64
	_, err := features.Each(context.Background(), path, tr, nil, func(p *features.Packet) error {
		if p.Verdict == features.Kept && p.Flow != 0 {
			batch.Add(p.Feature)
			ids = append(ids, p.Flow)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	probs, err := model.Probabilities(model.AsClassifier(m, 1), batch)
	if err != nil {
		b.Fatal(err)
	}
	k := m.OutputDim()
	votes := map[int64]*[maxK + 1]model.FlowScore{}
	seen := map[int64]int{}
	for i, id := range ids {
		v := votes[id]
		if v == nil {
			v = new([maxK + 1]model.FlowScore)
			votes[id] = v
		}
		row := probs[i*k : (i+1)*k]
		class := model.TopClasses(nil, row, 1)[0]
		seen[id]++
		v[0].Add(class, row)
		for n := seen[id]; n <= maxK; n++ {
			v[n].Add(class, row)
		}
	}
	return votes
}
