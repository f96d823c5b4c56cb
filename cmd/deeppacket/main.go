// Command deeppacket runs every step of Deep Packet: preprocess captures,
// split data sets, train, evaluate, export and predict. It wires flags and
// config to the packages below it (train, ckpt, model, data/*, synth) and
// holds no pipeline logic of its own.
package main

import (
	"fmt"
	"log/slog"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		if jsonLogs {
			slog.Error("failed", "error", err.Error())
		} else {
			fmt.Fprintln(os.Stderr, "deeppacket:", err)
		}
		os.Exit(1)
	}
}
