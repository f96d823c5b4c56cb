package train

import (
	"fmt"
	"math"

	"github.com/deeppacket/deeppacket/torch"
)

// newOptimizer is the config's optimiser (optimizer.name) over params.
func newOptimizer(c OptimizerConfig, params []*torch.Tensor) torch.Optimizer {
	if c.Name == "sgd" {
		return torch.NewSGD(params, torch.SGDConfig{LR: c.LR, Momentum: c.Momentum, WeightDecay: c.WeightDecay})
	}
	return torch.NewAdam(params, torch.AdamConfig{LR: c.LR, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, WeightDecay: c.WeightDecay, Fused: c.Fused})
}

// earlyStopping is Lightning's EarlyStopping callback (check_finite on):
// a value improves on the best when it beats it by more than min_delta;
// after patience epochs without improvement, or a value that is not
// finite, training stops. The best checkpoint uses the same rule with
// min_delta 0.
type earlyStopping struct {
	EarlyStoppingConfig
	bestValue    float64
	wait         int
	stopped      bool
	stoppedEpoch int
	reason       string
}

func newEarlyStopping(c EarlyStoppingConfig) *earlyStopping {
	e := &earlyStopping{EarlyStoppingConfig: c, bestValue: math.Inf(1)}
	if c.Mode == "max" {
		e.bestValue = math.Inf(-1)
	}
	return e
}

// modeOf is the direction in which a monitored quantity improves.
func modeOf(monitor string) string {
	if monitor == "val_acc" {
		return "max"
	}
	return "min"
}

// update records an epoch's value and reports whether it improved.
func (e *earlyStopping) update(v float64, epoch int) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		e.stop(epoch, fmt.Sprintf("%s = %g is not finite", e.Monitor, v))
		return false
	}
	improved := v+e.MinDelta < e.bestValue
	if e.Mode == "max" {
		improved = v-e.MinDelta > e.bestValue
	}
	if improved {
		e.bestValue, e.wait = v, 0
		return true
	}
	e.wait++
	if e.wait >= e.Patience {
		e.stop(epoch, fmt.Sprintf("%s did not improve on %g for %d epochs", e.Monitor, e.bestValue, e.wait))
	}
	return false
}

func (e *earlyStopping) stop(epoch int, reason string) {
	e.stopped, e.stoppedEpoch, e.reason = true, epoch, reason
}
