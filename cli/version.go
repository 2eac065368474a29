package cli

import (
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time with
// -ldflags "-X github.com/social/user-events-router/cli.version=…"
// (the Dockerfile does, from its VERSION build argument).
var version = "dev"

const versionUsage = `usage: user-events-router version

Prints the version and, when the build recorded it, the commit.
`

// versionCommand prints the version.
func versionCommand(args []string, stdout io.Writer) error {
	fs := newCommandFlags("version", versionUsage)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("version takes no arguments, got %q", fs.Arg(0))
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}

func versionString() string {
	rev := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	if rev == "" {
		return fmt.Sprintf("user-events-router %s", version)
	}
	return fmt.Sprintf("user-events-router %s (%s)", version, rev)
}
