package model

import (
	"fmt"
	"strings"
)

// TorchScriptName is the attribute name of state_dict key name in an
// exported TorchScript module: TorchScript attributes cannot contain dots,
// so dots become underscores ("conv1.0.weight" → "conv1_0_weight").
func TorchScriptName(name string) string { return strings.ReplaceAll(name, ".", "_") }

// samePadSource is the reference's "SAME" padding as a TorchScript method.
const samePadSource = `
def same_pad(self, x: Tensor, k: int, s: int) -> Tensor:
    l = x.size(-1)
    p = max(0, ((l + s - 1) // s - 1) * s + k - l)
    return torch.constant_pad_nd(x, [p // 2, p - p // 2], 0.0)
`

// TorchScriptSource is m's forward (InferenceOps) in TorchScript
// (torch.conv1d, torch.batch_norm, torch.max_pool1d, torch.linear, …) over
// attributes named by TorchScriptName: inference, with dropout off and
// batch norm on the running statistics, whatever m's mode.
// ckpt.ExportTorchScript compiles it into a module file.
func TorchScriptSource(m Model) (string, error) {
	ops, err := InferenceOps(m)
	if err != nil {
		return "", fmt.Errorf("no TorchScript forward: %w", err)
	}
	var b strings.Builder
	b.WriteString("def forward(self, x: Tensor) -> Tensor:\n")
	extra := ""
	for _, op := range ops {
		n := TorchScriptName(op.Param)
		var expr string
		switch op.Kind {
		case OpCopy:
			expr = op.In
		case OpConv1d:
			in := op.In
			if op.Same {
				in = fmt.Sprintf("self.same_pad(%s, %d, %d)", in, op.Kernel, op.Stride)
				extra = samePadSource
			}
			expr = fmt.Sprintf("torch.conv1d(%s, self.%s_weight, self.%s_bias, [%d], [0], [1], %d)", in, n, n, op.Stride, op.Groups)
		case OpBatchNorm:
			expr = fmt.Sprintf("torch.batch_norm(%s, self.%s_weight, self.%s_bias, self.%s_running_mean, self.%s_running_var, False, 0.1, 1e-05, True)", op.In, n, n, n, n)
		case OpReLU:
			expr = fmt.Sprintf("torch.relu(%s)", op.In)
		case OpPad:
			expr = fmt.Sprintf("torch.constant_pad_nd(%s, %s, 0.0)", op.In, intList(op.Pads))
		case OpMaxPool1d:
			// A 2-D input is one unbatched signal to torch.max_pool1d too.
			expr = fmt.Sprintf("torch.max_pool1d(%s, [%d])", op.In, op.Kernel)
		case OpMean:
			expr = fmt.Sprintf("torch.mean(%s, [-1])", op.In)
		case OpAdd:
			expr = fmt.Sprintf("%s + %s", op.In, op.In2)
		case OpFlatten:
			expr = fmt.Sprintf("%s.reshape(%s.size(0), -1)", op.In, op.In)
		case OpLinear:
			expr = fmt.Sprintf("torch.linear(%s, self.%s_weight, self.%s_bias)", op.In, n, n)
		default:
			return "", fmt.Errorf("no TorchScript for step %d", op.Kind)
		}
		fmt.Fprintf(&b, "    %s = %s\n", op.Out, expr)
	}
	return b.String() + "    return x\n" + extra, nil
}

// intList is a TorchScript int list: [1, 2].
func intList(v []int64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(s, ", ") + "]"
}
