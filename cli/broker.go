package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/broker"
)

// brokerSource says where the commands other than serve got the broker's
// URL, and so how much they know about it.
type brokerSource int

const (
	// fromNATSURL: NATS_URL names it.
	fromNATSURL brokerSource = iota
	// fromAddrFile: a running serve recorded its embedded server in
	// DATA_DIR (broker.AddrFileName).
	fromAddrFile
	// fromNATSListen: nothing says a router runs; NATS_LISTEN is where
	// serve's embedded server would listen. Whatever answers there may be
	// another server.
	fromNATSListen
)

// brokerTarget is the broker publish and check talk to.
type brokerTarget struct {
	URL    string
	Source brokerSource
	// AddrFile is DATA_DIR's address file, whether or not it exists.
	AddrFile string
}

// findBroker is the broker of cfg for a command other than serve: NATS_URL,
// else the embedded server a serve with the same DATA_DIR recorded, else
// NATS_LISTEN. A quick start in two terminals so reaches the router's
// embedded server whatever the second terminal's NATS_LISTEN says.
func findBroker(cfg configs.Config) (brokerTarget, error) {
	t := brokerTarget{AddrFile: filepath.Join(cfg.DataDir, broker.AddrFileName)}
	if cfg.NATSURL != "" {
		t.URL, t.Source = cfg.NATSURL, fromNATSURL
		return t, nil
	}
	u, err := broker.ReadAddrFile(t.AddrFile)
	switch {
	case err == nil:
		t.URL, t.Source = u, fromAddrFile
	case errors.Is(err, fs.ErrNotExist):
		t.URL, t.Source = "nats://"+cfg.NATSListen, fromNATSListen
	default:
		return t, fmt.Errorf("nats: %w", err)
	}
	return t, nil
}
