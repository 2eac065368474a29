// Command user-events-router carries user identity events from the Auth
// Service (NATS JetStream, or an HTTP fallback) into profile-sync commands in
// SQL for the Social Monolith. Run it with no arguments to serve; see
// `user-events-router help` for the other commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a mistake in the command line or configuration: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitCode prints err as one line and maps it to the exit status: 0 ok, 2
// usage or configuration, 1 anything that went wrong at run time.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0 // -h printed the command's usage
	}
	fmt.Fprintln(stderr, "user-events-router:", oneLine(err.Error()))
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

const usage = `usage: user-events-router [command] [flags]

commands:
  serve      run the router (the default)
  apply      keep the monolith's user tables in step with the commands
  prune      delete old commands every consumer group has read (--dry-run)
  publish    send sample user events the way the Auth Service does
  poison     list, show, replay or delete poison queue entries
             (see: user-events-router poison help)
  check      load the configuration and check the database and NATS
  healthcheck exit 0 if the router on ADMIN_ADDR is ready (-live: alive)
  version    print the version
  help       print this help

Run "user-events-router COMMAND -h" for a command's usage and flags.
Configuration comes from environment variables; see README.md.
`

// run is the whole program; main only adds the process around it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serveCommand(ctx, args, getenv, stdout, stderr)
	case "prune":
		return pruneCommand(ctx, args, getenv, stdout, stderr)
	case "apply":
		return applyCommand(ctx, args, getenv, stdout, stderr)
	case "publish":
		return publishCommand(ctx, args, getenv, stdout, stderr)
	case "poison":
		return poisonCommand(ctx, args, getenv, stdout, stderr)
	case "check":
		return checkCommand(ctx, args, getenv, os.Environ, stdout, stderr)
	case "healthcheck":
		return healthcheckCommand(ctx, args, getenv, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usagef("unknown command %q", cmd)
	}
}
