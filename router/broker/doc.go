// Package broker provisions what the router needs of NATS, and nothing
// more: the connection with its credentials and TLS (Connect), the Auth
// Service's stream (EnsureStream), the durable the router binds or creates
// (EnsureConsumer, Binding) with the limits that bound a process's memory
// on it (DurableLimits, MemoryBound), and the in-process server for
// running with no infrastructure (StartEmbedded). It imports nothing else
// of router/: the subscriber (router/consume), the admin status
// (router/admin) and the commands (cli/) build on it.
package broker
