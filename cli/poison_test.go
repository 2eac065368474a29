package cli

import (
	"testing"
	"unicode/utf8"
)

func TestClipWords(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly ten", 11, "exactly ten"},
		{"cut at a word boundary please", 16, "cut at a word…"},
		{"cut at a word boundary please", 14, "cut at a word…"},
		{"averyveryverylongwordwithoutspaces", 10, "averyvery…"},
		{"one two", 5, "one…"},
		{"héllo wörld ünïcode", 13, "héllo wörld…"},
	} {
		if got := clipWords(tt.in, tt.n); got != tt.want || utf8.RuneCountInString(got) > tt.n {
			t.Errorf("clipWords(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
