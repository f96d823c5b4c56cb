package model_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/data/features"
	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// Build the reference's CNN for application classification, with the
// reference's hyperparameters, and list its state_dict.
func ExampleNew() {
	task, _ := labels.ParseTask("application")
	h, err := model.DefaultHParams(model.KindCNN, task)
	if err != nil {
		log.Fatal(err)
	}
	if err := torch.ManualSeed(9876); err != nil {
		log.Fatal(err)
	}
	m, err := model.New(model.Spec{Kind: model.KindCNN, HParams: h, Task: task,
		Preprocessing: features.Options{Layout: features.LayoutReference}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	for _, v := range m.Store().Vars() {
		fmt.Println(v.Name, v.Tensor.Shape())
	}
	fmt.Println(m.Store().NumParameters(), "parameters,", m.OutputDim(), "classes")
	// Output:
	// conv1.0.weight [200 1 4]
	// conv1.0.bias [200]
	// conv2.0.weight [200 200 5]
	// conv2.0.bias [200]
	// fc1.0.weight [200 49400]
	// fc1.0.bias [200]
	// fc2.0.weight [100 200]
	// fc2.0.bias [100]
	// fc3.0.weight [50 100]
	// fc3.0.bias [50]
	// out.weight [17 50]
	// out.bias [17]
	// 10107417 parameters, 17 classes
}

// Classify the packets of a capture with the published traffic ResNet and
// give each flow its verdict, as `deeppacket predict` does.
func Example_classifyCapture() {
	m, err := ckpt.Load("../../shared/fixtures/reference_traffic_resnet.ckpt")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	c := model.AsClassifier(m, 1)
	tr := features.New(m.Preprocessing())
	batch := model.NewBatch(tr.Options().SignalLength)
	var flows []int64
	stats, err := features.Each(context.Background(), "../../shared/pcaps/iscx/email.pcap", tr, nil, func(p *features.Packet) error {
		if p.Verdict == features.Kept {
			batch.Add(p.Feature)
			flows = append(flows, p.Flow)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	probs, err := model.Probabilities(c, batch)
	if err != nil {
		log.Fatal(err)
	}
	verdicts := map[int64]*model.FlowScore{}
	var order []int64
	for i, flow := range flows {
		row := probs[i*c.OutputDim() : (i+1)*c.OutputDim()]
		if verdicts[flow] == nil {
			verdicts[flow] = &model.FlowScore{}
			order = append(order, flow)
		}
		verdicts[flow].Add(model.TopClasses(nil, row, 1)[0], row)
	}
	fmt.Printf("%d packets read, %d classified, %d flows\n", stats.Read, stats.Kept, len(order))
	class, p := verdicts[order[0]].Verdict()
	fmt.Printf("first flow: %s (%.2f) over %d packets\n", c.Task().ClassName(class), p, verdicts[order[0]].Packets())
	// Output:
	// 505 packets read, 417 classified, 38 flows
	// first flow: VPN: Email (0.18) over 7 packets
}

func TestMain(m *testing.M) {
	testenv.SkipExamplesWithoutShared("^Example_classifyCapture$",
		"../../shared/fixtures/reference_traffic_resnet.ckpt", "../../shared/pcaps/iscx/email.pcap")
	os.Exit(m.Run())
}
