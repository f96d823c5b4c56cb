package ckpt

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
	"github.com/deeppacket/deeppacket/labels"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// pwnedFile is what malicious_reduce.ckpt's pickle would create: its
// REDUCE calls posix.system("touch /tmp/deeppacket-pwned").
const pwnedFile = "/tmp/deeppacket-pwned"

func TestMaliciousCheckpointRefused(t *testing.T) {
	path := testenv.Shared(t, "fixtures/malicious_reduce.ckpt")
	if err := os.Remove(pwnedFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cannot clear %s before the test: %v", pwnedFile, err)
	}
	m, err := Load(path)
	if err == nil {
		m.Close()
		t.Fatal("malicious checkpoint loaded")
	}
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "posix.system") || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q should be ErrUnsafe naming posix.system and the file", err)
	}
	if _, statErr := os.Stat(pwnedFile); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("%s exists: the payload ran (stat: %v)", pwnedFile, statErr)
	}
}

func TestTruncatedCheckpointRefused(t *testing.T) {
	path := testenv.Shared(t, "fixtures/truncated.ckpt")
	_, err := ReadCheckpoint(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("error %v should name the file and say it is truncated or damaged", err)
	}
}

// TestBadCheckpoints: files that are not checkpoints give errors, never a
// crash.
func TestBadCheckpoints(t *testing.T) {
	dir := t.TempDir()
	notDict := filepath.Join(dir, "list.pt")
	if err := torch.SavePickle(notDict, []any{int64(1), "x"}); err != nil {
		t.Fatal(err)
	}
	noState := filepath.Join(dir, "nostate.pt")
	d := &torch.Dict{}
	d.Set("epoch", int64(1))
	if err := torch.SavePickle(noState, d); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.ckpt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.ckpt"), "no such file"},
		{empty, "not a complete PyTorch zip"},
		{notDict, "not a checkpoint dict"},
		{noState, "no state_dict"},
	} {
		_, err := ReadCheckpoint(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: error %v, want one naming the file and saying %q", filepath.Base(tc.path), err, tc.want)
		}
	}
}

// TestResNetStructure: a ResNet built from the reference checkpoint's
// hyperparameters has exactly its state_dict: names, order and shapes.
func TestResNetStructure(t *testing.T) {
	c, err := ReadCheckpoint(testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := model.New(c.Spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var names []string
	for _, v := range m.Store().Vars() {
		names = append(names, v.Name)
		if want, got := c.StateDict[v.Name].Shape(), v.Tensor.Shape(); !slices.Equal(want, got) {
			t.Errorf("%s: shape %v, checkpoint %v", v.Name, got, want)
		}
	}
	if !slices.Equal(names, c.Names) {
		t.Fatalf("state_dict keys differ:\n got %v\nwant %v", names, c.Names)
	}
	if c.Epoch != 1 || c.GlobalStep != 17592 || c.LightningVersion != "1.7.7" {
		t.Errorf("epoch %d step %d version %q, want 1 17592 1.7.7", c.Epoch, c.GlobalStep, c.LightningVersion)
	}
}

// TestCheckpointRoundTrip: our checkpoint keeps the weights, the spec and
// the Adam state a run resumes from, and a wrong shape is named.
func TestCheckpointRoundTrip(t *testing.T) {
	hp := model.HParams{"c1_output_dim": int64(4), "c1_kernel_size": int64(5), "c1_stride": int64(3), "c2_output_dim": int64(4),
		"c2_kernel_size": int64(3), "c2_stride": int64(1), "output_dim": int64(12), "signal_length": int64(60)}
	m, err := model.New(model.Spec{Kind: model.KindCNN, HParams: hp})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	opt := torch.NewAdam(m.Store().Parameters(), torch.DefaultAdam())
	defer opt.Close()
	s := torch.NewScope()
	x := torch.Rand(s, []int64{3, 1, 60}, torch.Float32, torch.CPU)
	y := torch.FromSlice(s, []int64{1, 2, 3}, []int64{3}, torch.CPU)
	if err := m.Forward(x).CrossEntropy(y).Backward(); err != nil {
		t.Fatal(err)
	}
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(t.TempDir(), "m.ckpt")
	extra := &torch.Dict{}
	adam := opt.StateDict()
	defer torch.FreeTree(adam)
	extra.Set("optimizer_states", []any{adam})
	if err := SaveCheckpoint(path, m, Meta{Epoch: 2, GlobalStep: 7, Extra: extra}); err != nil {
		t.Fatal(err)
	}
	c, err := ReadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Spec.Kind != model.KindCNN || c.Spec.Task.Name != "traffic" || c.Epoch != 2 || c.GlobalStep != 7 {
		t.Fatalf("read back kind %s task %q epoch %d step %d", c.Spec.Kind, c.Spec.Task.Name, c.Epoch, c.GlobalStep)
	}
	back, err := c.Model()
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	for _, v := range m.Store().Vars() {
		w, _ := back.Store().Lookup(v.Name)
		if eq, err := v.Tensor.Equal(w.Tensor); err != nil || !eq {
			t.Errorf("%s differs after the round trip (%v)", v.Name, err)
		}
	}
	states, _ := c.Extra.Get("optimizer_states")
	list, _ := states.([]any)
	if len(list) != 1 {
		t.Fatalf("optimizer_states = %v", states)
	}
	opt2 := torch.NewAdam(back.Store().Parameters(), torch.DefaultAdam())
	defer opt2.Close()
	if err := opt2.LoadStateDict(list[0]); err != nil {
		t.Fatal(err)
	}
	for i, st := range opt.State {
		if opt2.State[i].Step != st.Step {
			t.Errorf("param %d: step %v, want %v", i, opt2.State[i].Step, st.Step)
		}
		if eq, err := st.ExpAvgSq.Equal(opt2.State[i].ExpAvgSq); err != nil || !eq {
			t.Errorf("param %d: exp_avg_sq differs (%v)", i, err)
		}
	}

	// A checkpoint whose hyperparameters disagree with its weights.
	c.Spec.HParams["c1_output_dim"] = int64(5)
	if _, err := c.Model(); err == nil || !strings.Contains(err.Error(), "conv1.0.weight has shape [5 1 5] in the model but [4 1 5] in the file") {
		t.Fatalf("mismatch error %v should name the tensor and both shapes", err)
	}
}

// A checkpoint whose weights hold a NaN (a run that diverged) is refused,
// naming the tensor, instead of classifying everything as one class.
func TestNaNWeightsRefused(t *testing.T) {
	hp, err := model.DefaultHParams(model.KindCNN, labels.Traffic)
	if err != nil {
		t.Fatal(err)
	}
	hp["c1_output_dim"], hp["c2_output_dim"] = int64(4), int64(4)
	m, err := model.New(model.Spec{Kind: model.KindCNN, HParams: hp})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	v, _ := m.Store().Lookup("fc2.0.bias")
	if err := v.Tensor.Fill_(math.NaN()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "nan.ckpt")
	if err := SaveCheckpoint(path, m, Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "tensor fc2.0.bias holds NaN") {
		t.Errorf("error %v, want one naming fc2.0.bias and its NaN", err)
	}
}

// TestReadsTorchSavePickle: the checkpoint reader gives back the tree
// torch.SavePickle wrote (libtorch's pickler, as our checkpoints are made).
func TestReadsTorchSavePickle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tree.pt")
	w := torch.FromSlice(nil, []float32{1.5, -2}, []int64{2}, torch.CPU)
	defer w.Free()
	tree := &torch.Dict{}
	tree.Set("epoch", int64(3))
	tree.Set("name", "cnn")
	tree.Set("lr", 0.001)
	tree.Set("flags", []any{true, nil})
	tree.Set("w", w)
	if err := torch.SavePickle(path, tree); err != nil {
		t.Fatal(err)
	}
	a, err := openArchive(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	v, err := a.unpickle()
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*torch.Dict)
	for _, key := range []string{"epoch", "name", "lr", "flags"} {
		got, _ := d.Get(key)
		want, _ := tree.Get(key)
		if gotList, ok := got.([]any); ok {
			if len(gotList) != 2 || gotList[0] != true || gotList[1] != nil {
				t.Errorf("%s = %v", key, got)
			}
			continue
		}
		if got != want {
			t.Errorf("%s = %v (%T), want %v", key, got, got, want)
		}
	}
	got, _ := d.Get("w")
	loaded := got.(*torch.Tensor)
	defer loaded.Free()
	if eq, err := loaded.Equal(w); err != nil || !eq {
		t.Errorf("tensor came back as %v (%v)", loaded, err)
	}
}
