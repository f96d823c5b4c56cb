package torch_test

import (
	"fmt"
	"net"
	"time"

	"github.com/deeppacket/deeppacket/torch"
)

// A training step through DistributedDataParallel's engine. Each rank of a
// run does the same with its own batch (package dist reads the rank, the
// world size and the store's address from torchrun's variables); here the
// world is one process, so the averaged gradients are its own.
func ExampleNewDDP() {
	l, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the store
	if err != nil {
		panic(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	g, err := torch.NewProcessGroup(torch.GroupOptions{Addr: "127.0.0.1", Port: port, Rank: 0, WorldSize: 1, HostStore: true, Timeout: time.Minute})
	if err != nil {
		panic(err)
	}
	defer g.Close()

	store := torch.NewStore()
	defer store.Close()
	fc, err := torch.NewLinear(store.Root().Sub("fc"), 3, 1)
	if err != nil {
		panic(err)
	}
	ddp, err := torch.NewDDP(g, store.Parameters(), store.Buffers(), torch.DDPOptions{})
	if err != nil {
		panic(err)
	}
	defer ddp.Close()

	s := torch.NewScope()
	defer s.Close()
	x := torch.FromSlice(s, []float32{1, 2, 3, 4, 5, 6}, []int64{2, 3}, torch.CPU)
	if err := ddp.PreForward(); err != nil {
		panic(err)
	}
	loss := fc.Forward(x).Sum(false)
	if err := ddp.PostForward(loss); err != nil {
		panic(err)
	}
	if err := ddp.Backward(loss); err != nil {
		panic(err)
	}
	grad, err := s.Own(fc.Weight.Grad()).Float32s()
	if err != nil {
		panic(err)
	}
	fmt.Println(grad)
	// Output: [5 7 9]
}
