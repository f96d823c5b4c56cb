package ckpt_test

import (
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/deeppacket/deeppacket/ckpt"
	"github.com/deeppacket/deeppacket/internal/testenv"
)

// Load the reference's published traffic ResNet: a Lightning 1.7
// checkpoint, read without Python and without running its pickle.
func ExampleLoad() {
	m, err := ckpt.Load("../../shared/fixtures/reference_traffic_resnet.ckpt")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Println(m.Kind(), m.Task().Name, m.OutputDim(), "classes")
	fmt.Println("first class:", m.Task().ClassName(0))
	fmt.Println("input:", m.Preprocessing().SignalLength, "bytes,", m.Preprocessing().Layout, "layout")
	// Output:
	// resnet traffic 12 classes
	// first class: Chat
	// input: 1500 bytes, reference layout
}

// Read a checkpoint's record: what wrote it and where training stood.
func ExampleReadCheckpoint() {
	c, err := ckpt.ReadCheckpoint("../../shared/fixtures/reference_traffic_resnet.ckpt")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Printf("Lightning %s, epoch %d, step %d, %d tensors\n", c.LightningVersion, c.Epoch, c.GlobalStep, len(c.Names))
	// Output:
	// Lightning 1.7.7, epoch 1, step 17592, 78 tensors
}

func TestMain(m *testing.M) {
	testenv.SkipExamplesWithoutShared("^Example(Load|ReadCheckpoint)$", "../../shared/fixtures/reference_traffic_resnet.ckpt")
	os.Exit(m.Run())
}
