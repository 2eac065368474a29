// Package cli is the user-events-router command: its subcommands (serve,
// apply, prune, publish, poison, check, healthcheck, version, help), their
// flags, and the exit status. Run is the whole program; the module root's
// main only adds the process around it (the signals, os.Args, the
// environment, os.Exit), so the end-to-end tests (e2e/) run the very same
// commands in-process, through Run and ExitCode only. Tests here are unit
// tests of one piece (a formatter, the progress lines).
//
// One file per command: serve.go, apply.go, prune.go, publish.go,
// poison.go, check.go, healthcheck.go, version.go; a new command is a file
// here and a case in Run. Flags are the standard library's flag package,
// mostly through commandFlags (flags.go), which gives a command its
// -h/--help (usage on stdout, exit 0) and one style of usage error (exit
// 2). -h exits 0 for every command. A CLI library would add a dependency
// for what this already does, and for what nobody has asked for (shell
// completion, say).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// usageError is a mistake in the command line or configuration: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// ExitCode prints err (from Run) as one line on stderr and maps it to the
// exit status: 0 ok (and -h, which printed the usage), 2 usage or
// configuration, 1 anything that went wrong at run time.
func ExitCode(err error, stderr io.Writer) int {
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
  poison     list, show, stats, replay or delete poison queue entries
             (see: user-events-router poison help)
  check      load the configuration and check the database and NATS
  healthcheck exit 0 if the router on ADMIN_ADDR is ready (-live: alive)
  version    print the version
  help       print this help

Run "user-events-router COMMAND -h" for a command's usage and flags.
Configuration comes from environment variables; see README.md.
`

// Run runs the command args names (serve without one) with the
// environment getenv reads, until it ends or ctx is cancelled (serve shuts
// down gracefully then). It is the whole program; main only adds the
// process around it: Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
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
		return versionCommand(args, stdout)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usagef("unknown command %q", cmd)
	}
}
