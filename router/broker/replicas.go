package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// WantedReplicas is how many replicas the stream should have on a cluster
// of at least that many JetStream servers: three survive the loss of any
// one server (a quorum of two remains). On a smaller cluster there is
// nothing to gain: with two servers the cluster's own meta group stops
// when either goes, and an R2 stream with it. More than three (JetStream
// allows five) survives two losses, but is a choice, not a gap, so a
// stream of three replicas on a cluster of five is not reported.
const WantedReplicas = 3

// Redundancy is the stream's replicas against the JetStream servers of
// its cluster, as the broker describes them.
type Redundancy struct {
	Stream string
	// Replicas is the stream's configured replicas (StreamConfig.Replicas;
	// 0, which the server reads as 1, is counted as 1).
	Replicas int
	// Cluster is the name of the cluster holding the stream
	// (StreamInfo.Cluster.Name); empty when the server is not clustered.
	Cluster string
	// Servers is the number of JetStream servers of that cluster that
	// answered CountJetStreamServers; 1 when the server is not clustered;
	// 0 when not known (then ServersErr says why).
	Servers    int
	ServersErr error
}

// Weaker reports whether the stream has fewer replicas than the cluster
// could give it (WantedReplicas, on a cluster of at least that many
// servers): losing the server that holds it then stops the stream until
// that server returns. Unknown servers are never weaker.
func (r Redundancy) Weaker() bool {
	return r.Servers >= WantedReplicas && r.Replicas < WantedReplicas
}

// String is the one line check prints, naming the cause and the remedy
// when the stream is weaker than its cluster.
func (r Redundancy) String() string {
	switch {
	case r.Cluster == "":
		return fmt.Sprintf("nats: stream %s has %s on a single server (not clustered): it is only as available as that server", r.Stream, plural(r.Replicas, "replica"))
	case r.Servers == 0:
		return fmt.Sprintf("nats: stream %s has %s in cluster %s; how many JetStream servers the cluster has is unknown: %v", r.Stream, plural(r.Replicas, "replica"), r.Cluster, r.ServersErr)
	case r.Weaker():
		return fmt.Sprintf("nats: stream %s has %s on a cluster of %d JetStream servers (%s): losing the server that holds it stops the stream until that server returns, and the Auth Service falls back to HTTP meanwhile; "+
			"the Auth Service's UpdateStream sets Replicas: 1 on every start, so scale it up after each Auth Service start (`nats stream edit %s --replicas %d`), or change the Auth Service to ask for %d (README, \"Stream replicas\")",
			r.Stream, plural(r.Replicas, "replica"), r.Servers, r.Cluster, r.Stream, WantedReplicas, WantedReplicas)
	}
	return fmt.Sprintf("nats: stream %s has %s on a cluster of %d JetStream servers (%s)", r.Stream, plural(r.Replicas, "replica"), r.Servers, r.Cluster)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// StreamRedundancy reads the stream's replicas and the size of its
// cluster. The replicas come from the stream's configuration, its cluster
// from StreamInfo.Cluster: the name of the cluster the stream is placed
// in, empty on a server that is not clustered (then it is one server,
// never weaker, and nothing more is asked). Neither the stream's info nor
// the account's (AccountInfo, $JS.API.INFO) counts the cluster's servers:
// StreamInfo.Cluster lists only the stream's own peers (the leader alone,
// for R1). So the servers are counted with CountJetStreamServers, waiting
// at most gather for their answers (and ctx); a failure there leaves
// Servers 0 and says why in ServersErr, and is not an error of this
// function.
func StreamRedundancy(ctx context.Context, js jetstream.JetStream, stream string, gather time.Duration) (Redundancy, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return Redundancy{}, fmt.Errorf("stream %s: %w", stream, err)
	}
	return RedundancyOf(ctx, js.Conn(), s.CachedInfo(), gather), nil
}

// RedundancyOf is StreamRedundancy for a stream's info already read.
func RedundancyOf(ctx context.Context, nc *nats.Conn, info *jetstream.StreamInfo, gather time.Duration) Redundancy {
	r := Redundancy{Stream: info.Config.Name, Replicas: max(info.Config.Replicas, 1)}
	if info.Cluster != nil {
		r.Cluster = info.Cluster.Name
	}
	if r.Cluster == "" {
		r.Servers = 1
		return r
	}
	r.Servers, r.ServersErr = CountJetStreamServers(ctx, nc, r.Cluster, gather)
	return r
}

// statzPing is the request every server answers for the requesting
// account: nats-server exports $SYS.REQ.ACCOUNT.PING.STATZ from its
// system account into every account (the account's own statistics, no
// other account's), so a client of an ordinary account may ask it; what
// it may not is $SYS.REQ.SERVER.PING and the rest of $SYS. Its
// permissions must allow publishing to it (the least-privilege
// configuration grants it to the router).
const statzPing = "$SYS.REQ.ACCOUNT.PING.STATZ"

// gatherQuiet is how long CountJetStreamServers waits after an answer for
// the next one: servers of one cluster answer within milliseconds of each
// other.
const gatherQuiet = 250 * time.Millisecond

// ErrNoServerAnswered is CountJetStreamServers' error when no server
// answered the ping.
var ErrNoServerAnswered = errors.New("no server answered " + statzPing)

// CountJetStreamServers counts the JetStream-enabled servers of cluster
// that answer statzPing on nc: each server answers with its name, cluster
// and whether it runs JetStream, and asked with include_unused it answers
// even with none of the account's clients on it. It waits at most gather
// for the first answer, and then until no more come for gatherQuiet.
//
// Its limits: a server that is down, or too slow, is not counted (the
// figure is the servers up now, so a cluster that lost one looks smaller,
// never larger); servers of other clusters (gateways, leaf nodes) are left
// out by name; a cluster whose JetStream servers the account may not all
// use (placement tags, or JetStream limits on some servers only) counts
// them all. A server with events off (no system account) or permissions
// that deny the ping answer nothing: ErrNoServerAnswered, with the likely
// causes.
func CountJetStreamServers(ctx context.Context, nc *nats.Conn, cluster string, gather time.Duration) (int, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, fmt.Errorf("count JetStream servers: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(map[string]any{"include_unused": true, "cluster": cluster, "exact_match": true})
	if err := nc.PublishRequest(statzPing, inbox, req); err != nil {
		return 0, fmt.Errorf("count JetStream servers: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, gather)
	defer cancel()
	seen := map[string]bool{}
	answered := 0
	for {
		msg, err := nextAnswer(ctx, sub, answered > 0)
		if err != nil {
			break
		}
		answered++
		var resp struct {
			Server struct {
				ID        string `json:"id"`
				Cluster   string `json:"cluster"`
				JetStream bool   `json:"jetstream"`
			} `json:"server"`
		}
		if json.Unmarshal(msg.Data, &resp) == nil && resp.Server.JetStream && resp.Server.Cluster == cluster {
			seen[resp.Server.ID] = true
		}
	}
	if answered == 0 {
		return 0, fmt.Errorf("%w within %v: the connection's permissions may not allow publishing there, or the servers run without a system account", ErrNoServerAnswered, gather)
	}
	if len(seen) == 0 {
		return 0, fmt.Errorf("none of the %d servers that answered %s runs JetStream in cluster %s", answered, statzPing, cluster)
	}
	return len(seen), nil
}

// nextAnswer waits for the next answer until ctx ends, and after a first
// answer (more) for at most gatherQuiet.
func nextAnswer(ctx context.Context, sub *nats.Subscription, more bool) (*nats.Msg, error) {
	if more {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, gatherQuiet)
		defer cancel()
	}
	return sub.NextMsgWithContext(ctx)
}
