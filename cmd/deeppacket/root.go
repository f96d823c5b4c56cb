package main

import (
	"fmt"
	"github.com/spf13/viper"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/deeppacket/deeppacket/internal/progress"
)

// subcommands holds the constructors that each command's file registers from
// its init, so that adding a command touches only its own file.
var subcommands []func() *cobra.Command

func register(newCmd func() *cobra.Command) { subcommands = append(subcommands, newCmd) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "deeppacket",
		Short:         "Deep Packet: classify encrypted traffic packet by packet with a 1-D CNN",
		Version:       ownVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return setUpLogging(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.String("config", "", "YAML file of settings; every flag is also a key there")
	pf.StringArray("set", nil, "override one setting, key=value (repeatable)")
	pf.Bool("quiet", false, "no progress bars")
	pf.String("log-level", "info", "log level: debug, info, warn, error")
	pf.String("log-format", "text", "log format: text or json")
	for _, newCmd := range subcommands {
		root.AddCommand(newCmd())
	}
	root.SetFlagErrorFunc(suggestFlag)
	return root
}

// suggestFlag adds the nearest known flag to an unknown flag's error.
func suggestFlag(cmd *cobra.Command, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return err
	}
	best, bestDist := "", -1
	for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.InheritedFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			if d := editDistance(name, f.Name); bestDist < 0 || d < bestDist {
				best, bestDist = f.Name, d
			}
		})
	}
	if best == "" || bestDist > max(2, len(name)/3) {
		return err
	}
	return fmt.Errorf("%w (did you mean --%s?)", err, best)
}

// jsonLogs is set when logs are JSON lines: the fatal error is one too.
var jsonLogs bool

func setUpLogging(cmd *cobra.Command) error {
	quiet, err := strconv.ParseBool(globalSetting(cmd, "quiet", "false"))
	if err != nil {
		return fmt.Errorf("quiet: %w", err)
	}
	progress.Quiet = quiet
	levelName := globalSetting(cmd, "log-level", "info")
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelName)); err != nil {
		return fmt.Errorf("--log-level %q: %w", levelName, err)
	}
	format := globalSetting(cmd, "log-format", "text")
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, opts)))
	case "json":
		slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, opts)))
		jsonLogs = true
	default:
		return fmt.Errorf("--log-format %q: want text or json", format)
	}
	return nil
}

// globalSetting is a global flag's value with the precedence of every
// setting (see settings): the flag on the command line, else a --set, the
// DEEPPACKET_ variable, the --config file's key, the default.
func globalSetting(cmd *cobra.Command, flag, def string) string {
	key := flagKey(flag)
	if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
		return f.Value.String()
	}
	sets, _ := cmd.Flags().GetStringArray("set")
	for i := len(sets) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(sets[i], "="); ok && strings.TrimSpace(k) == key {
			return v
		}
	}
	if v, ok := os.LookupEnv(envPrefix + "_" + envName(key)); ok {
		return v
	}
	if path, _ := cmd.Flags().GetString("config"); path != "" {
		v := viper.New()
		v.SetConfigFile(path)
		if v.ReadInConfig() == nil && v.IsSet(key) {
			return v.GetString(key)
		}
	}
	return def
}
