package store

import (
	"strings"
	"testing"
)

// FuzzParsePoisonID: whatever is typed, what reaches a query is a
// lower-case id or id prefix, and its range holds exactly the ids that
// start with it.
func FuzzParsePoisonID(f *testing.F) {
	for _, s := range []string{"6b727153", "6b7271%25%25", "________", "6b727153-0000-4000-8000-000000000001", "\x00", "6B727153-", " aaaaaaaa "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, prefix, err := parsePoisonID(s)
		if err != nil {
			if id != "" {
				t.Errorf("parsePoisonID(%q) = %q with error %v", s, id, err)
			}
			if strings.ContainsAny(err.Error(), "\x00\u202e\x1b") {
				t.Errorf("error repeats the input raw: %q", err)
			}
			return
		}
		if len(id) < MinPoisonIDPrefix || len(id) > len(poisonIDTemplate) || prefix != (len(id) < len(poisonIDTemplate)) {
			t.Errorf("parsePoisonID(%q) = %q, prefix %v", s, id, prefix)
		}
		if strings.Trim(id, "0123456789abcdef-") != "" {
			t.Errorf("parsePoisonID(%q) = %q: not only hex digits and hyphens", s, id)
		}
		lo, hi := prefixRange(id)
		if len(lo) != 36 || len(hi) != 36 || !strings.HasPrefix(lo, id) || !strings.HasPrefix(hi, id) || lo > hi {
			t.Errorf("prefixRange(%q) = %q, %q", id, lo, hi)
		}
		if _, p, err := parsePoisonID(lo); err != nil || p {
			t.Errorf("the range's low end %q is not an id: %v", lo, err)
		}
	})
}
