package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/social/user-events-router/schema"
)

const healthcheckUsage = `usage: user-events-router healthcheck [-live] [-addr HOST:PORT] [-timeout D]

Asks the router on this host whether it can take events (GET /readyz on
ADMIN_ADDR; with -live, whether it is alive: /healthz) and exits 0 on a
200, 1 otherwise. An address on every interface (:8081) is asked on
loopback. Neither path needs ADMIN_TOKEN. The image's HEALTHCHECK runs it.
`

// healthcheckCommand asks the router on this host whether it can take
// events (GET /readyz on ADMIN_ADDR; with -live, whether it is alive:
// /healthz) and succeeds only on a 200. It is what the image's HEALTHCHECK
// and the compose file run: the image is scratch, with no shell and no
// curl, so the probe has to be the binary itself. Neither path needs
// ADMIN_TOKEN.
func healthcheckCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("healthcheck", healthcheckUsage)
	var (
		live    = fs.Bool("live", false, "ask /healthz (the process is alive) instead of /readyz (it can take events)")
		addr    = fs.String("addr", "", "admin address to ask, host:port (default: ADMIN_ADDR)")
		timeout = fs.Duration("timeout", healthcheckTimeout, "give up after this long")
	)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("healthcheck: unexpected argument %q", fs.Arg(0))
	}
	if *timeout <= 0 {
		return usagef("healthcheck: -timeout must be positive, got %v", *timeout)
	}
	target := *addr
	if target == "" {
		cfg, err := loadConfig(getenv)
		if err != nil {
			return err
		}
		target = cfg.AdminAddr
	}
	path := "/readyz"
	if *live {
		path = "/healthz"
	}
	u, err := probeURL(target, path)
	if err != nil {
		return usagef("healthcheck: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	client := &http.Client{
		// Straight to the router: no proxy from the environment, no
		// redirect to somewhere else, no connection kept for later.
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	said := schema.PrintableText(strings.TrimSpace(string(body)), 512)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s: %s", u, resp.Status, said)
	}
	fmt.Fprintf(stdout, "GET %s: %s: %s\n", u, resp.Status, said)
	return nil
}

// healthcheckTimeout is healthcheck's default -timeout: shorter than the
// image's HEALTHCHECK --timeout, so the command reports why it failed
// rather than being killed.
const healthcheckTimeout = 3 * time.Second

// probeURL is the URL of path on a server listening on addr, as seen from
// the same host: a server on every interface (":8081", "0.0.0.0:8081",
// "[::]:8081") is asked on loopback.
func probeURL(addr, path string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("admin address %q: %w", addr, err)
	}
	if port == "0" || port == "" {
		return "", fmt.Errorf("admin address %q has no fixed port: give one with -addr", addr)
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: path}).String(), nil
}
