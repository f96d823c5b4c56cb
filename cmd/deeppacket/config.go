package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

const envPrefix = "DEEPPACKET"

// globalFlags are flags of every command that are not experiment settings.
var globalFlags = map[string]bool{"config": true, "set": true, "help": true, "version": true, "log-level": true, "log-format": true, "quiet": true}

// globalKeys are the global flags that are settings too, for every command:
// a key of the config file and a DEEPPACKET_ variable, read by setUpLogging.
var globalKeys = []string{"quiet", "log_level", "log_format"}

// otherVariables are DEEPPACKET_ variables that are not settings: where the
// libtorch shim is (torch/load.c), and what the tests and benchmarks read.
var otherVariables = map[string]bool{
	"SHIM": true, "PYTHON": true, "TEST_DEVICE": true, "ADAM_FUSED": true, "STEPS": true,
	"BENCH_SET": true, "BENCH_DUMP": true, "KEEP_PLOT": true, "TRAIN_CHILD": true, "TRAIN_CHILD_RUN": true,
}

// settings gathers a command's effective settings, lowest precedence first:
// defaults, the --config file, DEEPPACKET_* environment variables, --set
// key=value, then flags given on the command line. A flag "test-size" is the
// key "test_size" and the variable DEEPPACKET_TEST_SIZE; nested keys
// ("model.c1_stride") are DEEPPACKET_MODEL_C1_STRIDE. defaults declares the
// keys that have no flag. A key that is neither a flag nor in defaults is an
// error naming the nearest known key, so a typo never silently changes an
// experiment.
func settings(cmd *cobra.Command, defaults map[string]any) (*viper.Viper, error) {
	v := viper.New()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	known := map[string]bool{}
	for key, value := range flattenKeys(defaults) {
		v.SetDefault(key, value)
		known[key] = true
	}
	var bindErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if globalFlags[f.Name] {
			return
		}
		key := flagKey(f.Name)
		known[key] = true
		if err := v.BindPFlag(key, f); err != nil && bindErr == nil {
			bindErr = err
		}
		if err := v.BindEnv(key); err != nil && bindErr == nil {
			bindErr = err
		}
	})
	if bindErr != nil {
		return nil, bindErr
	}
	for _, key := range globalKeys {
		known[key] = true
	}
	if err := checkVariables(cmd.Root()); err != nil {
		return nil, err
	}
	for key := range known {
		if err := v.BindEnv(key); err != nil {
			return nil, err
		}
	}
	if path, _ := cmd.Flags().GetString("config"); path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config %s: %w", path, err)
		}
		for _, key := range v.AllKeys() {
			if !known[key] {
				return nil, unknownKeyError(fmt.Sprintf("config %s", path), key, known)
			}
		}
	}
	sets, _ := cmd.Flags().GetStringArray("set")
	for _, kv := range sets {
		key, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--set %q: want key=value", kv)
		}
		key = strings.ToLower(strings.TrimSpace(key))
		if !known[key] {
			return nil, unknownKeyError("--set", key, known)
		}
		if f := cmd.Flags().Lookup(strings.ReplaceAll(key, "_", "-")); f != nil && f.Changed {
			continue // a flag on the command line wins
		}
		v.Set(key, value)
	}
	return v, nil
}

func flagKey(name string) string { return strings.ReplaceAll(name, "-", "_") }

// envName is the DEEPPACKET_ variable of a key, without the prefix.
func envName(key string) string {
	return strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// checkVariables refuses a DEEPPACKET_ variable that is no command's
// setting (a misspelt one would otherwise be ignored without a word),
// naming the nearest. A variable of another command's setting is that
// command's and is not read here.
func checkVariables(root *cobra.Command) error {
	names := map[string]bool{}
	for _, key := range globalKeys {
		names[envName(key)] = true
	}
	for key := range flattenKeys(settingDefaults) {
		names[envName(key)] = true
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { names[envName(f.Name)] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, envPrefix+"_")
		if !ok || names[rest] || otherVariables[rest] {
			continue
		}
		known := map[string]bool{}
		for n := range names {
			known[envPrefix+"_"+n] = true
		}
		return unknownKeyError("environment", name, known)
	}
	return nil
}

// settingDefaults are the keys that have no flag (train's experiment
// settings), for checkVariables; the train command registers them.
var settingDefaults = map[string]any{}

// flattenKeys turns nested maps into dotted keys, as viper names them.
func flattenKeys(m map[string]any) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := strings.ToLower(prefix + k)
			if sub, ok := v.(map[string]any); ok {
				walk(key+".", sub)
				continue
			}
			out[key] = v
		}
	}
	walk("", m)
	return out
}

func unknownKeyError(where, key string, known map[string]bool) error {
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestDist := "", -1
	for _, k := range names {
		if d := editDistance(key, k); bestDist < 0 || d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return fmt.Errorf("%s: unknown key %q", where, key)
	}
	return fmt.Errorf("%s: unknown key %q (did you mean %q?)", where, key, best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
