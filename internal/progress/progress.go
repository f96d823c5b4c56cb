// Package progress draws progress bars on stderr for long work. A bar is
// silent when stderr is not a terminal or the user asked for --quiet, so logs
// and CI output stay clean.
//
// Imports none of our packages.
package progress

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Quiet turns every bar off; the CLI sets it from --quiet.
var Quiet bool

// Enabled reports whether bars are drawn.
func Enabled() bool {
	return !Quiet && term.IsTerminal(int(os.Stderr.Fd()))
}

// Bar is a progress bar; all methods are safe on a disabled bar.
type Bar struct{ bar *progressbar.ProgressBar }

// New starts a bar over total units (-1 when unknown). bytes=true shows
// the units as sizes and rates as bytes per second.
func New(total int64, description string, bytes bool) *Bar {
	if !Enabled() {
		return &Bar{}
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionOnCompletion(func() { io.WriteString(os.Stderr, "\n") }),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowIts())
	}
	return &Bar{bar: progressbar.NewOptions64(total, opts...)}
}

// Add advances the bar by n units.
func (b *Bar) Add(n int64) {
	if b.bar != nil {
		b.bar.Add64(n)
	}
}

// Describe replaces the text before the bar (for example a running loss).
func (b *Bar) Describe(text string) {
	if b.bar != nil {
		b.bar.Describe(text)
	}
}

// Finish completes the bar.
func (b *Bar) Finish() {
	if b.bar != nil {
		b.bar.Finish()
	}
}
