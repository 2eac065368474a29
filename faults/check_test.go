package faults

import (
	"strings"
	"testing"
)

// TestProblemsCatchLossAndDuplicates proves the end-state check can fail:
// each broken outcome below is one the scenarios must report.
func TestProblemsCatchLossAndDuplicates(t *testing.T) {
	t.Parallel()
	must := []string{"a", "b", "c"}
	may := []string{"d"}
	clean := func() outcome {
		return outcome{committed: 3, distinct: 3, perUser: map[string]int{"a": 1, "b": 1, "c": 1}}
	}
	tests := []struct {
		name   string
		breakF func(o *outcome)
		want   string // "" = no problem
	}{
		{"clean", func(*outcome) {}, ""},
		{"a dropped event may have its command", func(o *outcome) { o.perUser["d"] = 1; o.committed, o.distinct = 4, 4 }, ""},
		{"lost event", func(o *outcome) { delete(o.perUser, "b"); o.committed, o.distinct = 2, 2 }, "1 events lost"},
		{"two commands for one event", func(o *outcome) { o.perUser["a"] = 2; o.committed, o.distinct = 4, 4 }, "more than one command"},
		{"dropped event twice", func(o *outcome) { o.perUser["d"] = 2; o.committed, o.distinct = 5, 5 }, "more than one command"},
		{"uuid stored twice", func(o *outcome) { o.committed = 4 }, "distinct uuids"},
		{"command nobody sent", func(o *outcome) { o.perUser["z"] = 1 }, "never published"},
		{"left in stream", func(o *outcome) { o.leftInStream = 1 }, "left in the stream"},
		{"poisoned", func(o *outcome) { o.poisoned = 1 }, "poison entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := clean()
			tt.breakF(&o)
			got := strings.Join(problems(o, must, may), "; ")
			if tt.want == "" && got != "" {
				t.Errorf("problems = %q, want none", got)
			}
			if tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("problems = %q, want one containing %q", got, tt.want)
			}
		})
	}
}
