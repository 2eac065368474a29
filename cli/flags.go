package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// commandFlags is a command's flag set and its usage. -h, -help and --help
// print the usage to stdout and end the command with flag.ErrHelp, which
// exits 0; any other mistake is a usage error (exit 2): one line naming it
// and pointing at -h.
type commandFlags struct {
	*flag.FlagSet
	// usage is what precedes the flags' list: the synopsis and what the
	// command does.
	usage string
}

func newCommandFlags(name, usage string) *commandFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package would print its error and our usage itself; parse
	// does, on the right stream.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &commandFlags{FlagSet: fs, usage: usage}
}

// parse parses args; see commandFlags for -h and mistakes.
func (c *commandFlags) parse(args []string, stdout io.Writer) error {
	err := c.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.printUsage(stdout)
		return flag.ErrHelp
	case err != nil:
		return usageError{fmt.Errorf("%s: %w (see: user-events-router %s -h)", c.Name(), err, c.Name())}
	}
	return nil
}

// parseNoArgs is parse for a command that takes flags only: its
// configuration comes from the environment.
func (c *commandFlags) parseNoArgs(args []string, stdout io.Writer) error {
	if err := c.parse(args, stdout); err != nil {
		return err
	}
	if c.NArg() > 0 {
		return usagef("%s takes no arguments (configuration is read from the environment), got %q", c.Name(), c.Arg(0))
	}
	return nil
}

func (c *commandFlags) printUsage(w io.Writer) {
	fmt.Fprint(w, c.usage)
	hasFlags := false
	c.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		return
	}
	fmt.Fprint(w, "\nflags:\n")
	c.SetOutput(w)
	c.PrintDefaults()
	c.SetOutput(io.Discard)
}

// isSet reports whether the command line set the flag name.
func (c *commandFlags) isSet(name string) bool {
	set := false
	c.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
