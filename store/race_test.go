//go:build race

package store_test

// raceEnabled reports whether the tests run under the race detector, which
// slows the pure-Go SQLite driver down several times over.
const raceEnabled = true
