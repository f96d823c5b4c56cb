package live

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics serves an engine's counters in Prometheus's format.
type Metrics struct {
	reg     *prometheus.Registry
	latency prometheus.Histogram
}

// NewMetrics makes an empty registry; New fills it with the engine's
// counters.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "deeppacket_live_verdict_latency_seconds",
		Help:    "Time from the arrival of a flow's k-th packet to its first verdict.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	m.reg.MustRegister(m.latency)
	return m
}

// Handler serves the metrics (for /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *Metrics) watch(c *Counters) {
	counter := func(name, help string, load func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(load()) })
	}
	m.reg.MustRegister(
		counter("deeppacket_live_packets_received_total", "Packets the capture delivered.", c.Received.Load),
		counter("deeppacket_live_packets_kernel_dropped_total", "Packets the kernel dropped (capture buffer full).", c.KernelDropped.Load),
		counter("deeppacket_live_packets_dropped_total", "Packets dropped because the queue to the model was full.", c.Dropped.Load),
		counter("deeppacket_live_packets_classified_total", "Packets classified by the model.", c.Classified.Load),
		counter("deeppacket_live_flows_evicted_total", "Flows evicted from a full flow table.", c.FlowsEvicted.Load),
		counter("deeppacket_live_flows_ended_total", "Flows ended by timeout, eviction or shutdown.", c.FlowsEnded.Load),
		counter("deeppacket_live_verdicts_total", "Flow verdicts written.", c.Verdicts.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "deeppacket_live_flows_active", Help: "Flows in the flow table."},
			func() float64 { return float64(c.FlowsActive.Load()) }),
	)
	for i := range c.Skipped {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "deeppacket_live_packets_skipped_total",
			Help:        "Packets the preprocessing omits, by reason.",
			ConstLabels: prometheus.Labels{"reason": SkipReason(i)},
		}, func() float64 { return float64(c.Skipped[i].Load()) }))
	}
}
