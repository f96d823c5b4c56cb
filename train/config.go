package train

import (
	"fmt"
	"math"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is one experiment: everything a run depends on. Its keys (the
// mapstructure tags, nested with dots) are the keys of the YAML files under
// configs/, of --set and of the DEEPPACKET_* variables.
type Config struct {
	Data           DataConfig          `mapstructure:"data"`
	Task           string              `mapstructure:"task"`       // application | traffic
	Layout         string              `mapstructure:"layout"`     // the preprocessing layout the data was made with: reference | paper
	MaskPorts      bool                `mapstructure:"mask_ports"` // whether that preprocessing zeroed the ports
	Model          ModelConfig         `mapstructure:"model"`
	Epochs         int                 `mapstructure:"epochs"`
	BatchSize      int                 `mapstructure:"batch_size"`
	Optimizer      OptimizerConfig     `mapstructure:"optimizer"`
	Seed           uint64              `mapstructure:"seed"`
	Device         string              `mapstructure:"device"`  // auto | cpu | cuda | cuda:N
	Threads        int                 `mapstructure:"threads"` // libtorch intra-op threads; 0 keeps libtorch's default
	Loader         LoaderConfig        `mapstructure:"loader"`
	EarlyStopping  EarlyStoppingConfig `mapstructure:"early_stopping"`
	ValidationFrac float64             `mapstructure:"validation_fraction"` // share of the training rows held out for validation; 0: none
	Checkpoint     CheckpointConfig    `mapstructure:"checkpoint"`
	Pretrain       PretrainConfig      `mapstructure:"pretrain"` // the SAE's layer-wise pretraining
	// Distributed applies when the run is launched as several processes
	// (torchrun, or RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set).
	Distributed DistributedConfig `mapstructure:"distributed"`
	// InitFrom is a model file (a Lightning checkpoint, ours or Lightning
	// 2.x's, or safetensors) whose weights the model starts from instead of
	// the seed's; its model must have this config's shapes. Empty: none.
	InitFrom string `mapstructure:"init_from"`
}

// DataConfig names the sets: ours (`deeppacket split`) or the reference's
// own Spark output; the loader recognises either by its schema.
type DataConfig struct {
	Train string `mapstructure:"train"`
	Test  string `mapstructure:"test"` // optional: evaluated with the best model at the end
}

// ModelConfig is the model kind and the reference's hyperparameter names.
type ModelConfig struct {
	Kind         string `mapstructure:"kind"` // cnn | resnet | sae
	C1OutputDim  int64  `mapstructure:"c1_output_dim"`
	C1KernelSize int64  `mapstructure:"c1_kernel_size"`
	C1Stride     int64  `mapstructure:"c1_stride"`
	C1Groups     int64  `mapstructure:"c1_groups"`
	C1NBlock     int64  `mapstructure:"c1_n_block"`
	C2OutputDim  int64  `mapstructure:"c2_output_dim"`
	C2KernelSize int64  `mapstructure:"c2_kernel_size"`
	C2Stride     int64  `mapstructure:"c2_stride"`
	OutputDim    int64  `mapstructure:"output_dim"`
	SignalLength int64  `mapstructure:"signal_length"`
	// HiddenDims are the SAE's hidden layer sizes.
	HiddenDims []int64 `mapstructure:"hidden_dims"`
	// Dropout is every dropout layer's probability in training; -1 keeps
	// the reference's (0.05 in the dense layers, 0.5 in the ResNet's
	// blocks). Not a hyperparameter: checkpoints do not keep it.
	Dropout float64 `mapstructure:"dropout"`
}

// OptimizerConfig is torch.optim.Adam's (or SGD's) arguments.
type OptimizerConfig struct {
	Name        string  `mapstructure:"name"` // adam | sgd
	LR          float64 `mapstructure:"lr"`
	Beta1       float64 `mapstructure:"beta1"`
	Beta2       float64 `mapstructure:"beta2"`
	Eps         float64 `mapstructure:"eps"`
	WeightDecay float64 `mapstructure:"weight_decay"`
	Momentum    float64 `mapstructure:"momentum"` // sgd only
	// Fused updates each parameter in one pass over memory (as PyTorch 2's
	// Adam(fused=True)); it agrees with the unfused step within float32
	// rounding.
	Fused bool `mapstructure:"fused"`
}

// LoaderConfig tunes the batch loader.
type LoaderConfig struct {
	ReadAhead     int `mapstructure:"read_ahead"`
	Workers       int `mapstructure:"workers"`
	ShuffleWindow int `mapstructure:"shuffle_window"`
	// DropLast leaves out each training epoch's last batch when it is
	// smaller than batch_size (DataLoader's drop_last; evaluation keeps
	// every row), and in a distributed run the rows past a multiple of the
	// world size (DistributedSampler's drop_last) instead of repeating
	// some.
	DropLast bool `mapstructure:"drop_last"`
}

// EarlyStoppingConfig is Lightning's EarlyStopping callback.
type EarlyStoppingConfig struct {
	Enabled  bool    `mapstructure:"enabled"`
	Monitor  string  `mapstructure:"monitor"` // train_loss | val_loss | val_acc
	Patience int     `mapstructure:"patience"`
	MinDelta float64 `mapstructure:"min_delta"`
	Mode     string  `mapstructure:"mode"` // min | max
}

// CheckpointConfig is what a run keeps.
type CheckpointConfig struct {
	SaveLast    bool   `mapstructure:"save_last"`   // checkpoints/last.ckpt after every epoch
	SaveBest    bool   `mapstructure:"save_best"`   // checkpoints/best.ckpt when the monitored value improves
	TorchScript bool   `mapstructure:"torchscript"` // model.pt (TorchScript) of the best model at the end
	Monitor     string `mapstructure:"monitor"`     // what "best" means; empty: early_stopping.monitor
}

// DistributedConfig configures data-parallel training over libtorch's c10d.
type DistributedConfig struct {
	Backend  string `mapstructure:"backend"`   // auto | gloo | nccl
	TimeoutS int    `mapstructure:"timeout_s"` // rendezvous and every collective; a lost rank fails the others after it
}

// PretrainConfig drives the SAE's greedy layer-wise pretraining.
type PretrainConfig struct {
	Epochs int     `mapstructure:"epochs"` // per layer; 0 skips pretraining
	LR     float64 `mapstructure:"lr"`
}

// DefaultConfig is the reference's application CNN as its train_cnn runs it.
func DefaultConfig() Config {
	return Config{
		Task:   "application",
		Layout: "reference",
		Model: ModelConfig{
			Kind: "cnn", C1OutputDim: 200, C1KernelSize: 4, C1Stride: 3,
			C2OutputDim: 200, C2KernelSize: 5, C2Stride: 1,
			C1Groups: 1, C1NBlock: 4,
			OutputDim: 17, SignalLength: 1500, HiddenDims: []int64{400, 300, 200, 100, 50}, Dropout: -1,
		},
		Epochs:    20,
		BatchSize: 16,
		Optimizer: OptimizerConfig{Name: "adam", LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Fused: true},
		Seed:      9876,
		Device:    "auto",
		Loader:    LoaderConfig{ReadAhead: 64, Workers: 2, ShuffleWindow: 1 << 16},
		EarlyStopping: EarlyStoppingConfig{
			Enabled: true, Monitor: "train_loss", Patience: 3, MinDelta: 0, Mode: "min",
		},
		Checkpoint:  CheckpointConfig{SaveLast: true, SaveBest: true, TorchScript: true},
		Pretrain:    PretrainConfig{Epochs: 0, LR: 1e-3},
		Distributed: DistributedConfig{Backend: "auto", TimeoutS: 1800},
	}
}

// Map is c as nested maps keyed like the YAML files: the CLI declares its
// keys and defaults from DefaultConfig().Map(), and a run saves its
// effective configuration from it.
func (c Config) Map() map[string]any { return structMap(reflect.ValueOf(c)) }

func structMap(v reflect.Value) map[string]any {
	out := map[string]any{}
	for i := range v.NumField() {
		key := v.Type().Field(i).Tag.Get("mapstructure")
		f := v.Field(i)
		if f.Kind() == reflect.Struct {
			out[key] = structMap(f)
			continue
		}
		out[key] = f.Interface()
	}
	return out
}

// YAML is c as a YAML document, the form runs save and print.
func (c Config) YAML() ([]byte, error) { return yaml.Marshal(c.Map()) }

// Validate checks values that a typo or a bad --set would make wrong.
func (c *Config) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	oneOf := func(key, val string, allowed ...string) {
		for _, a := range allowed {
			if val == a {
				return
			}
		}
		bad("%s %q: want %s", key, val, strings.Join(allowed, " or "))
	}
	oneOf("task", c.Task, "application", "traffic")
	oneOf("layout", c.Layout, "reference", "paper")
	oneOf("distributed.backend", c.Distributed.Backend, "auto", "gloo", "nccl")
	if c.Distributed.TimeoutS < 1 {
		bad("distributed.timeout_s %d: want at least 1 second", c.Distributed.TimeoutS)
	}
	oneOf("model.kind", c.Model.Kind, "cnn", "resnet", "sae")
	oneOf("optimizer.name", c.Optimizer.Name, "adam", "sgd")
	oneOf("early_stopping.monitor", c.EarlyStopping.Monitor, "train_loss", "val_loss", "val_acc")
	oneOf("early_stopping.mode", c.EarlyStopping.Mode, "min", "max")
	if c.Checkpoint.Monitor != "" {
		oneOf("checkpoint.monitor", c.Checkpoint.Monitor, "train_loss", "val_loss", "val_acc")
	}
	if c.Data.Train == "" {
		bad("data.train: no training set given")
	}
	if c.Epochs < 1 {
		bad("epochs %d: want at least 1", c.Epochs)
	}
	if c.BatchSize < 1 {
		bad("batch_size %d: want at least 1", c.BatchSize)
	} else if c.Model.SignalLength > 0 && int64(c.BatchSize)*c.Model.SignalLength*4 > maxBatchBytes {
		bad("batch_size %d: one batch of %d-value inputs would take %d MB before any activation; want at most %d",
			c.BatchSize, c.Model.SignalLength, int64(c.BatchSize)*c.Model.SignalLength*4>>20, maxBatchBytes/(c.Model.SignalLength*4))
	}
	if c.Model.OutputDim < 2 {
		bad("model.output_dim %d: want at least 2 classes", c.Model.OutputDim)
	}
	if d := c.Model.Dropout; d != -1 && !(d >= 0 && d < 1) {
		bad("model.dropout %g: want -1 (the reference's) or a probability in [0, 1)", d)
	}
	if c.Model.SignalLength < 1 {
		bad("model.signal_length %d: want at least 1", c.Model.SignalLength)
	}
	if !(c.Optimizer.LR > 0) || math.IsInf(c.Optimizer.LR, 0) {
		bad("optimizer.lr %g: want a positive number", c.Optimizer.LR)
	}
	if c.ValidationFrac < 0 || c.ValidationFrac >= 1 {
		bad("validation_fraction %g: want 0 (none) or a fraction below 1", c.ValidationFrac)
	}
	if c.ValidationFrac == 0 && (strings.HasPrefix(c.EarlyStopping.Monitor, "val_") || strings.HasPrefix(c.Checkpoint.Monitor, "val_")) {
		bad("monitoring %s needs validation_fraction > 0", c.monitor())
	}
	if c.EarlyStopping.Patience < 0 {
		bad("early_stopping.patience %d: want 0 or more", c.EarlyStopping.Patience)
	}
	if c.Threads < 0 {
		bad("threads %d: want 0 (libtorch's default) or more", c.Threads)
	}
	for _, b := range []struct {
		key string
		v   float64
	}{{"optimizer.beta1", c.Optimizer.Beta1}, {"optimizer.beta2", c.Optimizer.Beta2}} {
		if !(b.v >= 0 && b.v < 1) {
			bad("%s %g: want a number in [0, 1)", b.key, b.v)
		}
	}
	for _, n := range []struct {
		key string
		v   float64
	}{{"optimizer.eps", c.Optimizer.Eps}, {"optimizer.weight_decay", c.Optimizer.WeightDecay}, {"optimizer.momentum", c.Optimizer.Momentum},
		{"early_stopping.min_delta", c.EarlyStopping.MinDelta}} {
		if !(n.v >= 0) || math.IsInf(n.v, 0) {
			bad("%s %g: want 0 or a positive number", n.key, n.v)
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"loader.read_ahead", c.Loader.ReadAhead}, {"loader.workers", c.Loader.Workers}, {"loader.shuffle_window", c.Loader.ShuffleWindow}} {
		if n.v < 0 {
			bad("%s %d: want 0 (the default) or more", n.key, n.v)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// maxBatchBytes bounds one batch's input tensor (float32): 256 MB, which
// its activations multiply many times over.
const maxBatchBytes = 256 << 20

// monitor is the quantity that decides the best checkpoint.
func (c *Config) monitor() string {
	if c.Checkpoint.Monitor != "" {
		return c.Checkpoint.Monitor
	}
	return c.EarlyStopping.Monitor
}
