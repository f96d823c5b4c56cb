package train

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/deeppacket/deeppacket/labels"
)

// The confusion matrix picture has a colour bar right of the matrix: a
// strip whose colour runs from the darkest blue (share 1) at the top to
// white (share 0) at the bottom.
func TestConfusionPictureHasColourBar(t *testing.T) {
	names := ClassNames(labels.TaskForOutputDim(17), 17)
	norm := make([][]float64, len(names))
	for i := range norm {
		norm[i] = make([]float64, len(names))
		norm[i][i] = 0.8
		norm[i][(i+1)%len(names)] = 0.2
	}
	path := filepath.Join(t.TempDir(), "confusion.png")
	if err := heatmap(path, "application", names, norm); err != nil {
		t.Fatal(err)
	}
	if dst := os.Getenv("DEEPPACKET_KEEP_PLOT"); dst != "" {
		b, _ := os.ReadFile(path)
		os.WriteFile(dst, b, 0o644)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	if b.Dx() <= b.Dy() {
		t.Fatalf("picture %dx%d: no room right of the square matrix for a colour bar", b.Dx(), b.Dy())
	}
	// Look for a column in the right strip that goes from dark blue near
	// the top to white near the bottom.
	found := false
	for x := b.Max.X - (b.Dx() - b.Dy()); x < b.Max.X && !found; x++ {
		top, bottom := img.At(x, b.Min.Y+b.Dy()/10), img.At(x, b.Max.Y-b.Dy()/8)
		tr, tg, tb, _ := top.RGBA()
		br, bg, bb, _ := bottom.RGBA()
		found = tb>>8 > 100 && tr>>8 < 40 && tg>>8 < 80 && br>>8 > 230 && bg>>8 > 230 && bb>>8 > 230
	}
	if !found {
		t.Error("no colour bar (dark blue at the top to white at the bottom) right of the matrix")
	}
}
