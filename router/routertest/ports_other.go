//go:build !unix

package routertest

// claimAcross is a no-op where POSIX record locks are not at hand: the
// record within one process still holds.
func claimAcross(int) bool { return true }
