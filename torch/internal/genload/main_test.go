package main

import (
	"bytes"
	"os"
	"testing"
)

// The forwarders must match the shim's header: a function added to the
// header without go generate would be missing from the loader.
func TestListIsUpToDate(t *testing.T) {
	header, err := os.ReadFile("../../shim/dptorch.h")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Generate(header)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../dptorch_fns.h")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("torch/dptorch_fns.h is out of date with torch/shim/dptorch.h: run go generate ./torch")
	}
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		name, header, want, wantErr string
	}{
		{"error function over two lines", "dpt_error dpt_f(int a,\n    const char *b); /* note */",
			"DPT_FN(dpt_error, dpt_f, (int a, const char *b), (a, b), dpt_load_failure())", ""},
		{"void", "void dpt_g(dpt_tensor t);", "DPT_VOID(dpt_g, (dpt_tensor t), (t))", ""},
		{"pointer result, no parameters", "char *dpt_h(void);", "DPT_FN(char *, dpt_h, (void), (), NULL)", ""},
		{"freed by the loader", "void dpt_free_error(dpt_error err);\nint dpt_i(void);", "DPT_FN(int, dpt_i, (void), (), 0)", ""},
		{"unknown result type", "float dpt_j(void);", "", `no failure value for return type "float"`},
		{"no functions", "typedef char *dpt_error;", "", "no dpt_ functions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Generate([]byte(tc.header))
			if tc.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr)) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(got, []byte(tc.want+"\n")) || bytes.Count(got, []byte("DPT_")) != 3 {
				t.Errorf("got\n%s\nwant the line %s only", got, tc.want)
			}
		})
	}
}
