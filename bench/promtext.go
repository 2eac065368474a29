package main

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// handlerHistogram is Watermill's handler duration, registered by the
// router under its namespace (metrics.AddRouter).
const handlerHistogram = "user_events_router_watermill_handler_execution_time_seconds"

// receiveToAckHistogram is the router's time from receiving a JetStream
// message to acking it (its command committed).
const receiveToAckHistogram = "user_events_router_receive_to_ack_seconds"

// sample is one line of the Prometheus text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the samples of a Prometheus text exposition; lines it
// cannot read are skipped.
func parseMetrics(text string) []sample {
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name = line[:i]
			end, ok := parseLabels(line[i+1:], s.labels)
			if !ok {
				continue
			}
			rest = line[i+1+end:]
		} else if i >= 0 {
			s.name, rest = line[:i], line[i:]
		} else {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// parseLabels reads `k="v",…}` into m and returns the index just past '}'.
func parseLabels(s string, m map[string]string) (int, bool) {
	i := 0
	for i < len(s) {
		switch s[i] {
		case '}':
			return i + 1, true
		case ',', ' ':
			i++
			continue
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 || i+eq+1 >= len(s) || s[i+eq+1] != '"' {
			return 0, false
		}
		key := s[i : i+eq]
		i += eq + 2
		var val strings.Builder
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		m[key] = val.String()
		i++ // closing quote
	}
	return 0, false
}

func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// sumOf adds up the samples called name whose labels include want.
func sumOf(samples []sample, name string, want map[string]string) float64 {
	var total float64
	for _, s := range samples {
		if s.name == name && matches(s.labels, want) {
			total += s.value
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

// histogramOf merges the series of the histogram name whose labels
// include want.
func histogramOf(samples []sample, name string, want map[string]string) histogram {
	byBound := map[float64]float64{}
	var h histogram
	for _, s := range samples {
		if !matches(s.labels, want) {
			continue
		}
		switch s.name {
		case name + "_bucket":
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if err == nil {
				byBound[le] += s.value
			}
		case name + "_count":
			h.Count += s.value
		case name + "_sum":
			h.Sum += s.value
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
