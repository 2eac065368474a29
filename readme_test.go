package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/configs"
)

// TestREADMEDocumentsEveryVariable keeps the configuration table true.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, v := range configs.Variables() {
		row := ""
		for _, line := range strings.Split(readme, "\n") {
			if strings.HasPrefix(line, "| `"+v.Name+"` |") {
				row = line
			}
		}
		if row == "" {
			t.Errorf("README has no table row for %s", v.Name)
			continue
		}
		want := "(empty)"
		if v.Default != "" {
			want = "`" + shortDuration(v.Default) + "`"
		}
		if !strings.Contains(row, want) {
			t.Errorf("README row for %s does not give the default %s: %s", v.Name, want, row)
		}
	}
	for _, cmd := range []string{"go run .", "go test -race ./..."} {
		if !strings.Contains(readme, cmd) {
			t.Errorf("README lacks the command %q", cmd)
		}
	}
}

// shortDuration writes 1m0s as 1m and 168h0m0s as 168h, the way people do.
func shortDuration(s string) string {
	if d, err := time.ParseDuration(s); err == nil && d >= time.Minute && d%time.Minute == 0 {
		short := strings.TrimSuffix(d.String(), "0s")
		if d%time.Hour == 0 {
			short = strings.TrimSuffix(short, "0m")
		}
		return short
	}
	return s
}
