// Package dataset defines the Parquet files the pipeline passes between its
// steps: preprocessed packets (one file per capture) and the train/test sets.
//
// Imports: internal/atomicfile; no torch or model code.
package dataset

// Packet is one row of a preprocessed capture: the feature bytes of one kept
// packet (before zero-padding and before scaling by 1/255), its labels and
// where it came from.
type Packet struct {
	Feature      []byte `parquet:"feature"`
	AppLabel     *int64 `parquet:"app_label,optional"`
	TrafficLabel *int64 `parquet:"traffic_label,optional"`
	Source       string `parquet:"source,dict"`
	Index        int64  `parquet:"index"`
	TimestampNS  int64  `parquet:"timestamp_ns"`
	// Flow identifies the direction-independent 5-tuple, the same for both
	// directions of a connection.
	Flow int64 `parquet:"flow"`
}
