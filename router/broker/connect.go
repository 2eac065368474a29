package broker

import (
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/redact"
)

// Connect opens a NATS connection with the credentials and TLS settings of
// cfg. It reconnects forever: a broker outage delays work, it never ends the
// process. name identifies the connection in the server's monitoring.
func Connect(url string, cfg configs.Config, name string, logger *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "conn", name, "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info("nats reconnected", "conn", name, "url", redact.URL(c.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Error("nats async error", "conn", name, "subject", subject, "error", err)
		}),
	}
	switch {
	case cfg.NATSUser != "":
		opts = append(opts, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword))
	case cfg.NATSToken != "":
		opts = append(opts, nats.Token(cfg.NATSToken))
	case cfg.NATSCreds != "":
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	case cfg.NATSNKeySeed != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NATSNKeySeed)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_SEED=%q: %w", cfg.NATSNKeySeed, err)
		}
		opts = append(opts, opt)
	}
	if cfg.NATSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSCA))
	}
	if cfg.NATSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSCert, cfg.NATSKey))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		// A URL the client cannot parse comes back as a url.Error, which
		// repeats the URL, secrets and all: keep only the problem.
		if ue := (*neturl.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("connect to NATS at %s: %w", redact.URL(url), err)
	}
	return nc, nil
}
