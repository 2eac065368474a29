// Command user-events-router carries user identity events from the Auth
// Service (NATS JetStream, or an HTTP fallback) into profile-sync commands in
// SQL for the Social Monolith. Run it with no arguments to serve; see
// `user-events-router help` for the other commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/social/user-events-router/cli"
)

// main is the process around cli.Run: SIGINT and SIGTERM cancel its
// context (serve then shuts down gracefully), and its error becomes the
// exit status.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode(err, os.Stderr))
}
