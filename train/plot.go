package train

import (
	"bytes"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/deeppacket/deeppacket/internal/atomicfile"
)

// lossCurve draws the training loss (step losses averaged over buckets, and
// each epoch's mean) and the validation loss when there is one.
func lossCurve(path string, history []EpochMetrics, steps lossSeries) error {
	p := plot.New()
	p.Title.Text = "Training loss"
	p.X.Label.Text = "epoch"
	p.Y.Label.Text = "cross-entropy"
	p.Add(plotter.NewGrid())
	if len(history) > 0 && len(steps.points) > 0 {
		// Steps are spread over the epochs they belong to.
		perPoint := float64(len(history)) / float64(len(steps.points))
		xys := make(plotter.XYs, len(steps.points))
		for i, l := range steps.points {
			xys[i] = plotter.XY{X: (float64(i) + 0.5) * perPoint, Y: l}
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		line.Color = color.RGBA{R: 160, G: 190, B: 230, A: 255}
		p.Add(line)
		p.Legend.Add("train (steps)", line)
	}
	addEpochs := func(name string, c color.Color, value func(EpochMetrics) (float64, bool)) error {
		var xys plotter.XYs
		for _, m := range history {
			if v, ok := value(m); ok {
				xys = append(xys, plotter.XY{X: float64(m.Epoch + 1), Y: v})
			}
		}
		if len(xys) == 0 {
			return nil
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		line.Color, points.Color = c, c
		p.Add(line, points)
		p.Legend.Add(name, line, points)
		return nil
	}
	if err := addEpochs("train (epoch mean)", color.RGBA{R: 31, G: 90, B: 180, A: 255}, func(m EpochMetrics) (float64, bool) { return m.value("train_loss") }); err != nil {
		return err
	}
	if err := addEpochs("validation", color.RGBA{R: 220, G: 90, B: 30, A: 255}, func(m EpochMetrics) (float64, bool) { return m.value("val_loss") }); err != nil {
		return err
	}
	p.Legend.Top = true
	return savePNG(p, path, 16*vg.Centimeter, 10*vg.Centimeter)
}

func savePNG(p *plot.Plot, path string, w, h vg.Length) error {
	wt, err := p.WriterTo(w, h, "png")
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, buf.Bytes())
}

// confusionGrid is a row-normalised confusion matrix as a heat map grid:
// column c is the predicted class, row r the true class, drawn top down.
type confusionGrid struct{ norm [][]float64 }

func (g confusionGrid) Dims() (c, r int)   { return len(g.norm), len(g.norm) }
func (g confusionGrid) Z(c, r int) float64 { return g.norm[len(g.norm)-1-r][c] }
func (g confusionGrid) X(c int) float64    { return float64(c) }
func (g confusionGrid) Y(r int) float64    { return float64(r) }

// blues is seaborn's "Blues"-like ramp from white to dark blue, as n
// colours for the heat map and as the colour map of its colour bar (a
// share from 0 to 1).
type blues int

func (n blues) Colors() []color.Color {
	out := make([]color.Color, n)
	for i := range out {
		out[i] = blue(float64(i) / float64(n-1))
	}
	return out
}

func blue(t float64) color.Color {
	return color.RGBA{R: uint8(247 - t*(247-8)), G: uint8(251 - t*(251-48)), B: uint8(255 - t*(255-107)), A: 255}
}

func (n blues) At(v float64) (color.Color, error) {
	if v < 0 || v > 1 {
		return nil, palette.ErrOverflow
	}
	return blue(v), nil
}
func (n blues) Max() float64                       { return 1 }
func (n blues) SetMax(float64)                     {}
func (n blues) Min() float64                       { return 0 }
func (n blues) SetMin(float64)                     {}
func (n blues) Alpha() float64                     { return 1 }
func (n blues) SetAlpha(float64)                   {}
func (n blues) Palette(colors int) palette.Palette { return blues(colors) }

// heatmap draws the normalised confusion matrix with the class names and
// each cell's share, as the reference's notebook does with seaborn.
func heatmap(path, title string, names []string, norm [][]float64) error {
	n := len(names)
	if n == 0 {
		return fmt.Errorf("plot %s: no classes", path)
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "predicted"
	p.Y.Label.Text = "true"
	h := plotter.NewHeatMap(confusionGrid{norm}, blues(64))
	h.Min, h.Max = 0, 1
	p.Add(h)
	var xt, yt []plot.Tick
	for i, name := range names {
		xt = append(xt, plot.Tick{Value: float64(i), Label: name})
		yt = append(yt, plot.Tick{Value: float64(n - 1 - i), Label: name})
	}
	p.X.Tick.Marker = plot.ConstantTicks(xt)
	p.Y.Tick.Marker = plot.ConstantTicks(yt)
	p.X.Tick.Label.Rotation = 3.14159 / 3
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	labels := plotter.XYLabels{}
	var styles []draw.TextStyle
	for r := range n {
		for c := range n {
			v := norm[r][c]
			if v == 0 {
				continue
			}
			labels.XYs = append(labels.XYs, plotter.XY{X: float64(c), Y: float64(n - 1 - r)})
			labels.Labels = append(labels.Labels, fmt.Sprintf("%.2f", v))
		}
	}
	if len(labels.Labels) > 0 {
		l, err := plotter.NewLabels(labels)
		if err != nil {
			return err
		}
		for i, xy := range labels.XYs {
			st := l.TextStyle[i]
			st.XAlign, st.YAlign = draw.XCenter, draw.YCenter
			st.Font.Size = vg.Points(7)
			if norm[n-1-int(xy.Y)][int(xy.X)] > 0.5 {
				st.Color = color.White
			}
			styles = append(styles, st)
		}
		l.TextStyle = styles
		p.Add(l)
	}
	// A colour bar of the shares, right of the matrix.
	bar := plot.New()
	bar.HideX()
	bar.Y.Label.Text = "share of the true class"
	bar.Add(&plotter.ColorBar{ColorMap: blues(64), Vertical: true})
	side := vg.Length(4+n) * vg.Centimeter * 0.9
	barWidth := 2.5 * vg.Centimeter
	img := vgimg.New(side+barWidth, side)
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, 0, -barWidth, 0, 0))
	bar.Draw(draw.Crop(dc, side+0.3*vg.Centimeter, 0, 2*vg.Centimeter, -1.5*vg.Centimeter))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, buf.Bytes())
}
