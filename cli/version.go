package cli

import (
	"fmt"
	"runtime/debug"
)

// version is set at build time with
// -ldflags "-X github.com/social/user-events-router/cli.version=…"
// (the Dockerfile does, from its VERSION build argument).
var version = "dev"

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
