package routertest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is an in-process NATS cluster of JetStream servers for one test:
// routes on loopback, random ports, each server with its own store.
type Cluster struct {
	Name    string
	Servers []*ClusterServer
}

// ClusterServer is one server of a Cluster. Its client and route ports are
// fixed once it first started, so Restart brings back the same server at
// the same addresses with the same store (what a node's restart looks
// like to clients and to the other servers).
type ClusterServer struct {
	*server.Server
	URL  string
	opts server.Options
}

// StartCluster starts n JetStream servers in one cluster and returns once
// the cluster has a JetStream meta leader that counts all n as peers (so a
// stream of n replicas can be placed at once). They stop when the test
// ends.
//
// A JetStream cluster needs its routes configured before it starts, so the
// route ports are taken free beforehand (listen on port 0, close) and
// every server routes to every one (itself included, which it ignores).
// Another process may take such a port in between: then the whole start is
// tried again with new ports, up to three times.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	var err error
	for range 3 {
		var c *Cluster
		if c, err = startCluster(t, n); err == nil {
			t.Cleanup(c.Stop)
			c.WaitForMetaLeader(t)
			return c
		}
		c.Stop()
	}
	t.Fatalf("nats cluster of %d: %v", n, err)
	return nil
}

func startCluster(t testing.TB, n int) (*Cluster, error) {
	t.Helper()
	c := &Cluster{Name: "user-events-test"}
	dir := t.TempDir()
	// Route ports and client ports (which Restart listens on again) are
	// FreePorts: the kernel does not hand them out on its own.
	ports := make([]int, n)
	clientPorts := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		port, err := FreePort()
		if err != nil {
			return c, err
		}
		ports[i] = port
		if clientPorts[i], err = FreePort(); err != nil {
			return c, err
		}
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i])
	}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		cs := &ClusterServer{opts: server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   filepath.Join(dir, name),
			NoSigs:     true,
			NoLog:      true,
			Cluster:    server.ClusterOpts{Name: c.Name, Host: "127.0.0.1", Port: ports[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		}}
		c.Servers = append(c.Servers, cs)
		if err := cs.start(); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (cs *ClusterServer) start() error {
	opts := cs.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("nats server %s: %w", opts.ServerName, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("nats server %s not ready within 10s (route port %d taken?)", opts.ServerName, opts.Cluster.Port)
	}
	cs.Server, cs.URL = srv, srv.ClientURL()
	// The next start of this server uses the client port it was given.
	cs.opts.Port = srv.Addr().(*net.TCPAddr).Port
	return nil
}

// Stop shuts the server down (idempotent).
func (cs *ClusterServer) Stop() {
	if cs.Server != nil && cs.Server.Running() {
		cs.Server.Shutdown()
		cs.Server.WaitForShutdown()
	}
}

// Restart stops the server and starts it again at its addresses with its
// store; it returns once the server accepts clients (not once it has
// caught up with the cluster).
func (cs *ClusterServer) Restart(t testing.TB) {
	t.Helper()
	cs.Stop()
	if err := cs.start(); err != nil {
		t.Fatal(err)
	}
}

// URLs is every server's client URL, comma-separated, as NATS_URL takes it.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Servers))
	for i, cs := range c.Servers {
		urls[i] = cs.URL
	}
	return strings.Join(urls, ",")
}

// WaitForMetaLeader polls until one running server is the JetStream meta
// leader and sees every running server as a peer.
func (c *Cluster) WaitForMetaLeader(t testing.TB) {
	t.Helper()
	Eventually(t, 30*time.Second, "a JetStream meta leader with every server as a peer", func() bool {
		return c.Leader() != nil
	})
}

// Leader is the running server that is the JetStream meta leader and sees
// every running server as a peer, or nil.
func (c *Cluster) Leader() *ClusterServer {
	running := 0
	for _, cs := range c.Servers {
		if cs.Server != nil && cs.Running() {
			running++
		}
	}
	for _, cs := range c.Servers {
		if cs.Server != nil && cs.Running() && cs.JetStreamIsLeader() && len(cs.JetStreamClusterPeers()) >= running {
			return cs
		}
	}
	return nil
}

// Stop shuts every server down.
func (c *Cluster) Stop() {
	for _, cs := range c.Servers {
		cs.Stop()
	}
}
