package model

import (
	"fmt"
	"strings"

	"github.com/deeppacket/deeppacket/torch"
)

// TorchScriptName is the attribute name of state_dict key name in an
// exported TorchScript module: TorchScript attributes cannot contain dots,
// so dots become underscores ("conv1.0.weight" → "conv1_0_weight").
func TorchScriptName(name string) string { return strings.ReplaceAll(name, ".", "_") }

// script accumulates TorchScript source lines of forward.
type script struct{ b strings.Builder }

func (s *script) line(format string, args ...any) {
	s.b.WriteString("    ")
	fmt.Fprintf(&s.b, format, args...)
	s.b.WriteByte('\n')
}

// linear is x = torch.linear(x, <p>.weight, <p>.bias), then ReLU if relu.
func (s *script) linear(prefix string, relu bool) {
	n := TorchScriptName(prefix)
	if relu {
		s.line("x = torch.relu(torch.linear(x, self.%s_weight, self.%s_bias))", n, n)
		return
	}
	s.line("x = torch.linear(x, self.%s_weight, self.%s_bias)", n, n)
}

// head is the reference's dense layers, fc1…fcN then out.
func (s *script) head(n int) {
	s.line("x = x.reshape(x.size(0), -1)")
	for i := range n {
		s.linear(fmt.Sprintf("fc%d.0", i+1), true)
	}
	s.linear("out", false)
}

// bn is torch.batch_norm in eval mode for the BatchNorm1d at prefix.
func bn(v, prefix string) string {
	n := TorchScriptName(prefix)
	return fmt.Sprintf("torch.batch_norm(%s, self.%s_weight, self.%s_bias, self.%s_running_mean, self.%s_running_var, False, 0.1, 1e-05, True)", v, n, n, n, n)
}

// samePadSource is the reference's "SAME" padding as a TorchScript method.
const samePadSource = `
def same_pad(self, x: Tensor, k: int, s: int) -> Tensor:
    l = x.size(-1)
    p = max(0, ((l + s - 1) // s - 1) * s + k - l)
    return torch.constant_pad_nd(x, [p // 2, p - p // 2], 0.0)
`

// TorchScriptSource is m's forward in TorchScript (torch.conv1d,
// torch.batch_norm, torch.max_pool1d, torch.linear, …) over attributes
// named by TorchScriptName: inference, with dropout off and batch norm on
// the running statistics, whatever m's mode. ckpt.ExportTorchScript
// compiles it into a module file.
func TorchScriptSource(m Model) (string, error) {
	var s script
	extra := ""
	switch m := m.(type) {
	case *CNN:
		for _, c := range []struct {
			name string
			conv *torch.Sequential
		}{{"conv1", m.conv1}, {"conv2", m.conv2}} {
			o := c.conv.Modules[0].(*torch.Conv1d).Options
			s.line("x = torch.relu(torch.conv1d(x, self.%s_0_weight, self.%s_0_bias, [%d]))", c.name, c.name, max(o.Stride, 1))
		}
		s.line("x = torch.max_pool1d(x, [2])")
		s.head(len(m.head.fc))
	case *ResNet:
		extra = samePadSource
		r := m.net
		p := "conv1.0."
		conv := func(v, prefix string, c *sameConv) {
			o := c.conv.Options
			n := TorchScriptName(prefix)
			s.line("%s = torch.conv1d(self.same_pad(%s, %d, %d), self.%s_weight, self.%s_bias, [%d], [0], [1], %d)",
				v, v, c.kernel, c.stride, n, n, c.stride, max(o.Groups, 1))
		}
		conv("x", p+"first_block_conv.conv", r.firstConv)
		s.line("x = torch.relu(%s)", bn("x", p+"first_block_bn"))
		for i, b := range r.blocks {
			bp := fmt.Sprintf("%sbasicblock_list.%d.", p, i)
			s.line("identity = x")
			if !b.first {
				s.line("x = torch.relu(%s)", bn("x", bp+"bn1"))
			}
			conv("x", bp+"conv1.conv", b.conv1)
			s.line("x = torch.relu(%s)", bn("x", bp+"bn2"))
			conv("x", bp+"conv2.conv", b.conv2)
			if b.downsample {
				s.line("identity = torch.max_pool1d(self.same_pad(identity, %d, 1), [%d])", b.stride, b.stride)
			}
			if b.out != b.in {
				ch1 := (b.out - b.in) / 2
				s.line("identity = torch.constant_pad_nd(identity, [0, 0, %d, %d], 0.0)", ch1, b.out-b.in-ch1)
			}
			s.line("x = x + identity")
		}
		s.line("x = torch.relu(%s)", bn("x", p+"final_bn"))
		s.line("x = torch.mean(x, [-1])")
		s.linear(p+"dense", true)
		// The reference max-pools conv1's 2-D output: one unbatched signal.
		s.line("x = torch.max_pool1d(x, [2])")
		s.head(len(m.head.fc))
	case *SAE:
		s.line("x = x.reshape(x.size(0), -1)")
		for i := range m.fc {
			s.linear(fmt.Sprintf("fc%d.0", i+1), true)
		}
		s.linear("out", false)
	default:
		return "", fmt.Errorf("no TorchScript forward for a %T", m)
	}
	return "def forward(self, x: Tensor) -> Tensor:\n" + s.b.String() + "    return x\n" + extra, nil
}
