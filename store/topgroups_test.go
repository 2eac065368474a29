package store

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestTopGroupsKeepsOnlyTheLargest: whatever order the database sends the
// groups in, topGroups keeps the n largest (ties by key), sums up the rest
// exactly, and counts NULL and "" as one group.
func TestTopGroupsKeepsOnlyTheLargest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 3, 20} {
		counts := map[string]int{"": 0}
		var given []PoisonCount
		for i := range 500 {
			c := PoisonCount{Key: "subject." + strconv.Itoa(i), Count: 1 + rng.IntN(40)}
			given = append(given, c)
			counts[c.Key] = c.Count
		}
		// The "" group arrives twice (a NULL and an empty string).
		given = append(given, PoisonCount{"", 30}, PoisonCount{"", 15})
		counts[""] = 45
		rng.Shuffle(len(given), func(i, j int) { given[i], given[j] = given[j], given[i] })

		tg := newTopGroups(n)
		for _, c := range given {
			tg.add(c.Key, c.Count)
		}
		got := tg.groups()

		var all []PoisonCount
		total := 0
		for k, c := range counts {
			all = append(all, PoisonCount{k, c})
			total += c
		}
		slices.SortFunc(all, func(a, b PoisonCount) int {
			if a.Count != b.Count {
				return b.Count - a.Count
			}
			return strings.Compare(a.Key, b.Key)
		})
		rest := 0
		for _, c := range all[n:] {
			rest += c.Count
		}
		if !slices.Equal(got.Top, all[:n]) || got.OtherGroups != len(all)-n || got.OtherCount != rest || tg.total != total {
			t.Errorf("top %d = %v, other %d groups / %d entries, total %d; want %v, %d / %d, %d",
				n, got.Top, got.OtherGroups, got.OtherCount, tg.total, all[:n], len(all)-n, rest, total)
		}
	}
}
