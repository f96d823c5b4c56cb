package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/torch"
)

// TestVersionCommand: the libtorch line names the version the shim was built
// against and whether it has CUDA.
func TestVersionCommand(t *testing.T) {
	out, err := runCLI(t, "version")
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "deeppacket ") {
		t.Errorf("output does not start with the program's version:\n%s", out)
	}
	if err := torch.Load(); err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^libtorch ` + regexp.QuoteMeta(torch.Version()) + `, (CUDA \d+\.\d+, \d+ GPU\(s\) visible|no CUDA \(CPU only\)|CUDA libraries not loaded: no NVIDIA driver), \d+ threads$`)
	if !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(torch.Version()) || !want.MatchString(out) {
		t.Errorf("libtorch line missing or malformed (version %q):\n%s", torch.Version(), out)
	}
}
