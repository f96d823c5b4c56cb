package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func testCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	cmd.Flags().String("config", "", "")
	cmd.Flags().StringArray("set", nil, "")
	cmd.Flags().Float64("test-size", 0.2, "")
	return cmd
}

func TestSettingsPrecedenceAndUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("test_size: 0.3\nmodel:\n  c1_stride: 3\n"), 0o644)
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("tset_size: 0.3\n"), 0o644)
	defaults := map[string]any{"model": map[string]any{"c1_stride": 1}}

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		key     string
		want    string
		wantErr string
	}{
		{"default", nil, nil, "test_size", "0.2", ""},
		{"config file", []string{"--config", good}, nil, "test_size", "0.3", ""},
		{"nested config key", []string{"--config", good}, nil, "model.c1_stride", "3", ""},
		{"env over file", []string{"--config", good}, map[string]string{"DEEPPACKET_TEST_SIZE": "0.4"}, "test_size", "0.4", ""},
		{"nested env", nil, map[string]string{"DEEPPACKET_MODEL_C1_STRIDE": "5"}, "model.c1_stride", "5", ""},
		{"set over env", []string{"--set", "test_size=0.5"}, map[string]string{"DEEPPACKET_TEST_SIZE": "0.4"}, "test_size", "0.5", ""},
		{"flag over set", []string{"--set", "test_size=0.5", "--test-size", "0.6"}, nil, "test_size", "0.6", ""},
		{"typo in file", []string{"--config", typo}, nil, "", "", `unknown key "tset_size" (did you mean "test_size"?)`},
		{"typo in set", []string{"--set", "model.c1_strid=2"}, nil, "", "", `did you mean "model.c1_stride"?`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cmd := testCommand()
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			v, err := settings(cmd, defaults)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := v.GetString(tc.key); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

// The global flags are settings like the others: --log-format, --set,
// DEEPPACKET_LOG_FORMAT and log_format in the --config file, in that order.
func TestGlobalFlagsAreSettings(t *testing.T) {
	config := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(config, []byte("log_format: json\nquiet: true\nlog_level: warn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--config", config}, "", "json"},
		{[]string{"--config", config}, "text", "text"},
		{[]string{"--config", config, "--set", "log_format=text"}, "json", "text"},
		{[]string{"--config", config, "--log-format", "text"}, "json", "text"},
		{nil, "", "text"},
	}
	for _, tc := range tests {
		root := newRootCmd()
		cmd, _, err := root.Find([]string{"split"})
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		if tc.env != "" {
			t.Setenv("DEEPPACKET_LOG_FORMAT", tc.env)
		}
		if got := globalSetting(cmd, "log-format", "text"); got != tc.want {
			t.Errorf("%v with DEEPPACKET_LOG_FORMAT=%q: log format %q, want %q", tc.args, tc.env, got, tc.want)
		}
		if len(tc.args) > 0 && globalSetting(cmd, "quiet", "false") != "true" {
			t.Errorf("%v: quiet from the config file not read", tc.args)
		}
		os.Unsetenv("DEEPPACKET_LOG_FORMAT")
	}
	// A config file with the global keys is valid for every command.
	if _, err := runCLI(t, "split", "--config", config, "-o", t.TempDir(), t.TempDir()); err != nil && strings.Contains(err.Error(), "unknown key") {
		t.Errorf("global keys in a config file refused: %v", err)
	}
}

// A misspelt DEEPPACKET_ variable is an error naming the nearest one; one
// of another command's settings is not.
func TestMisspeltVariable(t *testing.T) {
	t.Setenv("DEEPPACKET_EPOHCS", "3")
	if _, err := runCLI(t, "split", "-o", t.TempDir(), t.TempDir()); err == nil || !strings.Contains(err.Error(), `did you mean "DEEPPACKET_EPOCHS"?`) {
		t.Errorf("DEEPPACKET_EPOHCS: error %v", err)
	}
	os.Unsetenv("DEEPPACKET_EPOHCS")
	t.Setenv("DEEPPACKET_EPOCHS", "3") // train's, not split's: not read, not an error
	if _, err := runCLI(t, "split", "-o", t.TempDir(), t.TempDir()); err != nil && strings.Contains(err.Error(), "DEEPPACKET_") {
		t.Errorf("another command's variable refused: %v", err)
	}
}
