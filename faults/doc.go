// Package faults holds the fault-injection suite: it builds the real
// user-events-router binary and runs it as child processes against a real
// NATS server and a real database, then kills it (SIGKILL, SIGTERM),
// restarts the broker, cuts the database away, runs several replicas and
// loses servers of a 3-server NATS cluster, and checks the guarantees of
// DESIGN §4 from the outside: every event published yields exactly one
// profile-sync command, the stream ends empty, no fault puts anything in
// the poison queue, and (TestConvergence, with `apply` killed too) the
// monolith's users end equal to the Auth Service's.
//
// The package has tests only. `go test ./faults` runs a short version
// (a couple of thousand events); FAULTS_LONG=1 runs the long one; -short
// skips it. See the README section "Fault-injection suite".
package faults
