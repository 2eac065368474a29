package main

import (
	"math"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// handlerHistogram is Watermill's handler duration, registered by the
// router under its namespace (metrics.AddRouter).
const handlerHistogram = "user_events_router_watermill_handler_execution_time_seconds"

// receiveToAckHistogram is the router's time from receiving a JetStream
// message to acking it (its command committed).
const receiveToAckHistogram = "user_events_router_receive_to_ack_seconds"

// commitBatchHistogram is the router's commands per SQL transaction (its
// group commit); its mean is rows per write transaction where the rows do
// not record their transaction (MySQL, SQLite).
const commitBatchHistogram = "user_events_router_commit_batch_commands"

// parseMetrics reads a Prometheus text exposition, what the router's
// /metrics answers, into its metric families by name. UTF-8 validation
// takes every name the format can carry, the legacy ones included.
func parseMetrics(text string) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(text))
}

// matches reports whether m has every label of want; a label m lacks
// counts as "".
func matches(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		if labelValue(m, k) != v {
			return false
		}
	}
	return true
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// sumOf adds up the counter, gauge or untyped series of the family name
// whose labels include want.
func sumOf(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var total float64
	for _, m := range families[name].GetMetric() {
		if !matches(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

// histogram is a Prometheus histogram: cumulative bucket counts by upper
// bound, the observation count and their sum.
type histogram struct {
	Bounds []float64 // ascending, the last one +Inf
	Counts []float64 // cumulative
	Count  float64
	Sum    float64
}

// histogramOf merges the series of the histogram family name whose labels
// include want.
func histogramOf(families map[string]*dto.MetricFamily, name string, want map[string]string) histogram {
	byBound := map[float64]float64{}
	var h histogram
	for _, m := range families[name].GetMetric() {
		ph := m.GetHistogram()
		if ph == nil || !matches(m, want) {
			continue
		}
		h.Count += countOf(ph.SampleCountFloat, ph.GetSampleCount())
		h.Sum += ph.GetSampleSum()
		for _, b := range ph.GetBucket() {
			byBound[b.GetUpperBound()] += countOf(b.CumulativeCountFloat, b.GetCumulativeCount())
		}
	}
	for le := range byBound {
		h.Bounds = append(h.Bounds, le)
	}
	sort.Float64s(h.Bounds)
	for _, le := range h.Bounds {
		h.Counts = append(h.Counts, byBound[le])
	}
	return h
}

// countOf is a histogram count, which the parser keeps as a float when the
// exposition's is not a whole number.
func countOf(float *float64, integer uint64) float64 {
	if float != nil {
		return *float
	}
	return float64(integer)
}

// Mean is the exact mean observation.
func (h histogram) Mean() float64 {
	if h.Count == 0 {
		return math.NaN()
	}
	return h.Sum / h.Count
}

// Quantile estimates the q-quantile as PromQL's histogram_quantile does:
// find the bucket holding the rank q×count and interpolate linearly between
// its bounds, assuming observations spread evenly inside it (from 0 for the
// first bucket). The true value lies in [lo, hi]. When the rank falls in the
// +Inf bucket the estimate is only "above lo": over is true.
func (h histogram) Quantile(q float64) (est, lo, hi float64, over bool) {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return math.NaN(), math.NaN(), math.NaN(), false
	}
	rank := q * h.Count
	prevBound, prevCount := 0.0, 0.0
	for i, bound := range h.Bounds {
		if h.Counts[i] >= rank && h.Counts[i] > prevCount {
			if math.IsInf(bound, 1) {
				return prevBound, prevBound, bound, true
			}
			frac := (rank - prevCount) / (h.Counts[i] - prevCount)
			return prevBound + (bound-prevBound)*frac, prevBound, bound, false
		}
		prevBound, prevCount = bound, h.Counts[i]
	}
	return prevBound, prevBound, math.Inf(1), true
}
