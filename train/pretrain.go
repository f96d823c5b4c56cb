package train

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/deeppacket/deeppacket/internal/progress"
	"github.com/deeppacket/deeppacket/model"
	"github.com/deeppacket/deeppacket/torch"
)

// pretrainEpochBase numbers the loader's pretraining passes apart from the
// training epochs, so that each pass has its own shuffle.
const pretrainEpochBase = 1 << 20

// pretrain runs the SAE's greedy layer-wise pretraining: each hidden layer,
// in order, trained as an autoencoder of the layer below's output for
// pretrain.epochs passes, with its own Adam. It happens once, before epoch
// 0; a run resumed from a checkpoint has it behind it.
func (t *trainer) pretrain(ctx context.Context) error {
	sae, ok := t.model.(*model.SAE)
	if !ok {
		return fmt.Errorf("pretraining needs an SAE, the model is a %s", t.model.Kind())
	}
	defer t.model.Store().Train(t.model.Store().Train(true))
	for layer := range sae.Layers() {
		p, err := sae.Pretrainer(layer)
		if err != nil {
			return err
		}
		err = t.pretrainLayer(ctx, p, layer, sae.Layers())
		p.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *trainer) pretrainLayer(ctx context.Context, p *model.Pretrainer, layer, layers int) error {
	c := t.cfg.Optimizer
	opt := torch.NewAdam(p.Parameters(), torch.AdamConfig{LR: t.cfg.Pretrain.LR, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, Fused: c.Fused})
	defer opt.Close()
	scope := torch.NewScope()
	defer scope.Close()
	for e := range t.cfg.Pretrain.Epochs {
		pass := pretrainEpochBase + layer*t.cfg.Pretrain.Epochs + e
		batches := t.train.Epoch(pass)
		bar := progress.New(int64(t.train.Batches()), fmt.Sprintf("pretrain layer %d/%d epoch %d/%d", layer+1, layers, e+1, t.cfg.Pretrain.Epochs), false)
		start := time.Now()
		var sum float64
		var n int64
		for {
			if err := ctx.Err(); err != nil {
				batches.Close()
				bar.Finish()
				return err
			}
			b, err := batches.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				batches.Close()
				bar.Finish()
				return err
			}
			loss, err := p.Step(torch.FromSlice(scope, b.Features, b.Shape[:], t.device), opt)
			scope.Close()
			if err == nil && (math.IsNaN(loss) || math.IsInf(loss, 0)) {
				err = fmt.Errorf("%w (%g)", ErrNaNLoss, loss)
			}
			if err != nil {
				batches.Close()
				bar.Finish()
				return fmt.Errorf("pretrain layer %d epoch %d: %w", layer+1, e, err)
			}
			sum += loss * float64(b.Size)
			n += int64(b.Size)
			bar.Add(1)
		}
		batches.Close()
		bar.Finish()
		slog.Info("pretrain", "layer", layer+1, "epoch", e, "reconstruction_loss", sum/float64(n), "seconds", math.Round(time.Since(start).Seconds()*10)/10)
	}
	return nil
}
